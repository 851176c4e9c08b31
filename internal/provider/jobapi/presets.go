package jobapi

import "sort"

// Names of the built-in presets. Each runs one upstream model, so that
// easel's model table (not the request) picks the upstream model.
const (
	// PresetAIImageToImage is the reference image-to-image service with
	// its fast, recommended model (nano_banana).
	PresetAIImageToImage = "aiimagetoimage"
	// PresetAIImageToImageNanoBanana is the same service, model named.
	PresetAIImageToImageNanoBanana = "aiimagetoimage-nano-banana"
	// PresetAIImageToImageStandard is the same service with its standard
	// model.
	PresetAIImageToImageStandard = "aiimagetoimage-standard"
)

// Upstream model names of the reference service.
const (
	ModelNanoBanana = "nano_banana"
	ModelStandard   = "standard"
)

// MatchInputImage is the reference service's ratio meaning "the input
// image's own aspect ratio", its default.
const MatchInputImage = "match_input_image"

// AIImageToImageRatios are the reference service's aspect ratios.
var AIImageToImageRatios = []string{MatchInputImage, "1:1", "3:2", "2:3", "9:16", "16:9", "3:4", "4:3"}

// Preset returns a fresh configuration of a built-in preset, which the
// caller may modify.
func Preset(name string) (Config, bool) {
	switch name {
	case PresetAIImageToImage, PresetAIImageToImageNanoBanana:
		return aiImageToImage(ModelNanoBanana), true
	case PresetAIImageToImageStandard:
		return aiImageToImage(ModelStandard), true
	}
	return Config{}, false
}

// PresetNames lists the built-in presets, sorted.
func PresetNames() []string {
	names := []string{PresetAIImageToImage, PresetAIImageToImageNanoBanana, PresetAIImageToImageStandard}
	sort.Strings(names)
	return names
}

// aiImageToImage describes the reference service as its wire format is
// documented in the jobapi-protocol spec: a multipart submit whose answer
// carries the outcome in a body-level code, and a status URL whose answer
// lists the result URLs once the job is completed.
func aiImageToImage(model string) Config {
	const api = "https://api.aiimagetoimage.io"
	return Config{
		Submit: SubmitConfig{
			Method: "POST",
			URL:    api + "/api/img2img/image-generate/image2image",
			Body:   "multipart",
			Fields: []Field{
				{Name: "image", From: "image"},
				// The service needs a prompt; easel's requests always
				// carry one, the default only guards the contract.
				{Name: "prompt", From: "prompt", Default: "High quality"},
				{Name: "negative_prompt", From: "negative_prompt", Default: ""},
				{Name: "model_type", From: "model"},
				{Name: "aspect_ratio", From: "aspect_ratio"},
			},
			Headers: map[string]string{"Accept": "application/json"},
		},
		Accept: AcceptConfig{
			JobIDPath:      "result.job_id",
			CodePath:       "code",
			CodeOK:         []string{"200"},
			RateLimitCodes: []string{"429"},
			MessagePath:    "message",
		},
		Poll: PollConfig{
			URL:            api + "/api/result/get?job_id={job_id}",
			Method:         "GET",
			CodePath:       "code",
			CodeOK:         []string{"200"},
			RateLimitCodes: []string{"429"},
			StatusPath:     "result.status",
			ProgressPath:   "result.progress",
			DoneValues:     []string{"completed"},
			FailedValues:   []string{"failed", "error"},
			RunningValues:  []string{"processing", "pending", "queued"},
			DoneOnResult:   true,
			ResultPath:     "result.image_url",
			MessagePath:    "message",
		},
		Models:             []string{ModelNanoBanana, ModelStandard},
		Model:              model,
		AspectRatios:       append([]string(nil), AIImageToImageRatios...),
		DefaultAspectRatio: MatchInputImage,
		RequiresImage:      true,
		MaxInputImages:     1,
	}
}
