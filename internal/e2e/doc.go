// Package e2e holds easel's end-to-end tests. Each test starts the real
// server through the same composition root as the binary (`easel serve`),
// points it at an in-process fake of a Gradio Space and talks to it with the
// official OpenAI Go SDK, so the whole path from an OpenAI client to the
// upstream protocol and back is exercised: configuration, authentication,
// request decoding, the job service, the Gradio backend, result storage,
// signed URLs and the JSON and streaming renderings.
//
// The package has no non-test code besides this comment.
package e2e
