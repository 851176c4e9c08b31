// Package e2e holds easel's end-to-end tests. Most start the real server
// in-process through the same composition root as the binary (`easel
// serve`), point it at an in-process fake of a Gradio Space or a job API and
// talk to it with the official OpenAI Go SDK or raw HTTP, so the whole path
// from a client to the upstream protocol and back is exercised:
// configuration, authentication, limits, request decoding, the job service
// and its records, the backends, result storage, signed URLs, the async job
// API and the JSON and streaming renderings.
//
// The durability tests (kill_test.go) run the gateway as a subprocess (the
// test binary re-executed as easel, see TestMain) so it can be SIGKILLed and
// restarted on the same data directory while async jobs are in flight.
//
// The package has no non-test code besides this comment.
package e2e
