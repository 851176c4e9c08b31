// Package browsertest drives Debian's Chromium through easel's web studio
// with playwright-core: its Go test starts `easel serve --demo` in-process
// and runs studio.mjs against it, which walks the studio's flows (key,
// models, generate with live progress, image upload, download, errors)
// and saves screenshots.
//
// Run it with `go test ./internal/ui/browsertest/` after
// `npm ci` in this folder; Chromium must be at /usr/bin/chromium
// (`apt-get install chromium`). EASEL_UI_ARTIFACTS names the folder for
// screenshots and downloads (default: a temporary folder).
package browsertest
