-- +goose Up
-- Blob keys of a job's stored input images, as a JSON array; NULL for none.
-- Retention keeps these blobs while the job's results live.
ALTER TABLE jobs ADD COLUMN input_keys TEXT;

-- +goose Down
ALTER TABLE jobs DROP COLUMN input_keys;
