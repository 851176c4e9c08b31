-- +goose Up
-- A key's default webhook: job events go there when a request names none.
ALTER TABLE api_keys ADD COLUMN webhook_url TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE api_keys DROP COLUMN webhook_url;
