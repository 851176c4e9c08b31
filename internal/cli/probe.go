package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/easelgw/easel/internal/config"
	"github.com/easelgw/easel/internal/provider/gradio"
)

// maxProbeBody bounds the app's /config and /info; a complex Space's
// /config is hundreds of KB.
const maxProbeBody = 16 << 20

type probeFlags struct {
	endpoint string
	json     bool
	name     string
	tokenEnv string
	timeout  time.Duration
}

func newProbeCommand(o *Options) *cobra.Command {
	var f probeFlags
	cmd := &cobra.Command{
		Use:   "probe [flags] SPACE",
		Short: "Inspect a Gradio Space and print a backend config for its image endpoints",
		Long: `Read a Gradio app's /config and API description (/info, under /gradio_api on
Gradio 5 and 6), list its endpoints, and print for each image endpoint (one
with an Image or Gallery output) a backend entry ready to paste under
"backends:" in easel's config file.

SPACE is a Space id (owner/name), a Space page URL
(https://huggingface.co/spaces/owner/name) or the base URL of any Gradio app.

Inputs are mapped from their parameter names, labels, component types and
defaults: prompt, negative prompt, width, height, steps, seed, randomize
seed, a resolution dropdown whose choices start with WxH (size_choice), an
Image input (image) and a Gallery input (images). Size and steps bounds come
from the sliders. Anything it cannot map is sent as the app's default and
flagged with a "# TODO" comment: check those before using the backend.

The token in $HF_TOKEN (see --token-env) is sent for private Spaces.

` + exitCodesHelp,
		Example: `  # Every image endpoint of a Space
  easel probe black-forest-labs/FLUX.1-schnell

  # One endpoint, named in the config as "flux"
  easel probe --endpoint /infer --name flux black-forest-labs/FLUX.1-schnell

  # Any Gradio app, as JSON for scripts
  easel probe --json http://127.0.0.1:7860

  # Save the snippet, paste it under "backends:" in easel.yaml, add the
  # backend to a model, then check it
  easel probe Tongyi-MAI/Z-Image-Turbo > z-image.yaml
  easel backends --config easel.yaml`,
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runProbe(cmd.Context(), o, f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.endpoint, "endpoint", "e", "", `only this endpoint ("/infer"), even if it returns no image`)
	fl.BoolVar(&f.json, "json", false, "print the endpoints and mappings as JSON")
	fl.StringVar(&f.name, "name", "", "backend name in the snippet (default: from the Space's name)")
	fl.StringVar(&f.tokenEnv, "token-env", config.DefaultTokenEnv, "environment variable holding a Hugging Face token; empty: none")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "bound on each request to the app")
	return cmd
}

// Gradio's /config, the parts probe reads.
type probeAppConfig struct {
	Version      string           `json:"version"`
	APIPrefix    *string          `json:"api_prefix"`
	Protocol     *string          `json:"protocol"`
	Components   []probeComponent `json:"components"`
	Dependencies []probeDep       `json:"dependencies"`
}

type probeComponent struct {
	ID      int            `json:"id"`
	Type    string         `json:"type"`
	Props   map[string]any `json:"props"`
	SkipAPI bool           `json:"skip_api"`
}

type probeDep struct {
	ID      *int  `json:"id"`
	APIName any   `json:"api_name"`
	Inputs  []int `json:"inputs"`
	Outputs []int `json:"outputs"`
	ShowAPI *bool `json:"show_api"`
}

// Gradio's /info, the parts probe reads.
type probeAPIInfo struct {
	NamedEndpoints map[string]struct {
		Parameters []probeParam `json:"parameters"`
		Returns    []struct {
			Label     string `json:"label"`
			Component string `json:"component"`
		} `json:"returns"`
	} `json:"named_endpoints"`
}

type probeParam struct {
	Label         string `json:"label"`
	ParameterName string `json:"parameter_name"`
	HasDefault    bool   `json:"parameter_has_default"`
	Default       any    `json:"parameter_default"`
	Component     string `json:"component"`
}

// probeReport is what probe found; --json prints it.
type probeReport struct {
	Space         string          `json:"space"`
	URL           string          `json:"url"`
	GradioVersion string          `json:"gradio_version"`
	Protocol      string          `json:"protocol"`
	APIPrefix     string          `json:"api_prefix"`
	Warnings      []string        `json:"warnings,omitempty"`
	Endpoints     []probeEndpoint `json:"endpoints"`
}

type probeEndpoint struct {
	APIName string        `json:"api_name,omitempty"`
	FnIndex int           `json:"fn_index"`
	Image   bool          `json:"image"`
	Inputs  []probeInput  `json:"inputs"`
	Outputs []probeOutput `json:"outputs"`
	// Backend is the suggested backend entry (the YAML snippet as data);
	// set for the endpoints a snippet is printed for.
	Backend map[string]any `json:"backend,omitempty"`

	dep     probeDep
	outIdx  int // first image output, -1 if none
	snippet *yaml.Node
	mapped  []mappedInput
}

type probeInput struct {
	Position   int      `json:"position"`
	Label      string   `json:"label,omitempty"`
	Name       string   `json:"parameter_name,omitempty"`
	Component  string   `json:"component"`
	HasDefault bool     `json:"has_default"`
	Default    any      `json:"default"`
	Minimum    *float64 `json:"minimum,omitempty"`
	Maximum    *float64 `json:"maximum,omitempty"`
	Step       *float64 `json:"step,omitempty"`
	Choices    []string `json:"choices,omitempty"`
	// From is the request field mapped onto the input; empty when a
	// constant is sent.
	From string `json:"from,omitempty"`
	// Mapped is false when probe could not tell what the input is.
	Mapped bool   `json:"mapped"`
	Note   string `json:"note,omitempty"`
}

type probeOutput struct {
	Index     int    `json:"index"`
	Label     string `json:"label,omitempty"`
	Component string `json:"component"`
}

func runProbe(ctx context.Context, o *Options, f probeFlags, arg string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	space, err := normalizeSpace(arg)
	if err != nil {
		return usageError(err)
	}
	base, err := gradio.BaseURL(space)
	if err != nil {
		return usageError(err)
	}
	token := ""
	if f.tokenEnv != "" {
		token = o.Getenv(f.tokenEnv)
	}
	rep, err := probeSpace(ctx, base, token, f.timeout)
	if err != nil {
		return err
	}
	rep.Space = space

	var chosen []*probeEndpoint
	if f.endpoint != "" {
		want := "/" + strings.TrimPrefix(f.endpoint, "/")
		for i := range rep.Endpoints {
			if rep.Endpoints[i].APIName == want {
				chosen = append(chosen, &rep.Endpoints[i])
			}
		}
		if len(chosen) == 0 {
			var names []string
			for _, e := range rep.Endpoints {
				names = append(names, e.APIName)
			}
			return usageErrorf("the app has no endpoint %s (it has: %s)", want, strings.Join(names, ", "))
		}
	} else {
		for i := range rep.Endpoints {
			if rep.Endpoints[i].Image {
				chosen = append(chosen, &rep.Endpoints[i])
			}
		}
	}
	name := f.name
	if name == "" {
		name = backendNameFor(space)
	}
	for _, ep := range chosen {
		n := name
		if len(chosen) > 1 {
			n = name + "-" + sanitizeName(strings.TrimPrefix(ep.APIName, "/"))
		}
		if err := ep.buildSnippet(n, space); err != nil {
			return err
		}
	}
	w := o.Stdout
	if f.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return writeProbeText(w, rep, chosen)
}

var hfSpacePage = regexp.MustCompile(`^https?://(?:www\.)?huggingface\.co/spaces/([A-Za-z0-9][A-Za-z0-9._-]*)/([A-Za-z0-9][A-Za-z0-9._-]*)/?$`)

// normalizeSpace accepts owner/name, a Space page URL or an app URL.
func normalizeSpace(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("the Space is empty")
	}
	if m := hfSpacePage.FindStringSubmatch(s); m != nil {
		return m[1] + "/" + m[2], nil
	}
	return strings.TrimRight(s, "/"), nil
}

var nameBad = regexp.MustCompile(`[^a-z0-9._-]+`)

func sanitizeName(s string) string {
	n := strings.Trim(nameBad.ReplaceAllString(strings.ToLower(s), "-"), "-._")
	if n == "" {
		n = "backend"
	}
	return n
}

// backendNameFor derives a backend name from a Space id or app URL.
func backendNameFor(space string) string {
	if !strings.Contains(space, "://") {
		_, name, _ := strings.Cut(space, "/")
		return sanitizeName(name)
	}
	u, err := url.Parse(space)
	if err != nil {
		return "gradio"
	}
	host := u.Hostname()
	if sub, ok := strings.CutSuffix(host, ".hf.space"); ok {
		return sanitizeName(sub)
	}
	return sanitizeName(host)
}

// probeSpace fetches and interprets the app's /config and /info.
func probeSpace(ctx context.Context, base, token string, timeout time.Duration) (*probeReport, error) {
	var ac probeAppConfig
	if err := probeGet(ctx, base+"/config", token, timeout, &ac); err != nil {
		return nil, err
	}
	rep := &probeReport{URL: base, GradioVersion: ac.Version}
	if ac.Protocol != nil {
		rep.Protocol = *ac.Protocol
	}
	switch rep.Protocol {
	case "sse_v1", "sse_v2", "sse_v2.1", "sse_v3":
	case "":
		rep.Warnings = append(rep.Warnings, "the app's /config names no protocol (Gradio 3.x, websockets): easel cannot drive it")
	default:
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("the app speaks protocol %q, which easel does not know", rep.Protocol))
	}
	if ac.APIPrefix != nil {
		p := strings.TrimRight(*ac.APIPrefix, "/")
		if p != "" && !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		rep.APIPrefix = p
	}
	var info *probeAPIInfo
	var pi probeAPIInfo
	if err := probeGet(ctx, base+rep.APIPrefix+"/info", token, timeout, &pi); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("reading %s/info failed (%v): parameter names and defaults come from /config only", rep.APIPrefix, err))
	} else {
		info = &pi
	}
	rep.addEndpoints(&ac, info)
	return rep, nil
}

// addEndpoints lists the app's API endpoints: those /info names, or, when
// /info could not be read, every named dependency not hidden from the API.
func (rep *probeReport) addEndpoints(ac *probeAppConfig, info *probeAPIInfo) {
	comps := make(map[int]probeComponent, len(ac.Components))
	for _, c := range ac.Components {
		comps[c.ID] = c
	}
	for i, d := range ac.Dependencies {
		name, ok := d.APIName.(string)
		if !ok || name == "" {
			continue
		}
		name = "/" + strings.TrimPrefix(name, "/")
		ep := probeEndpoint{APIName: name, FnIndex: i, dep: d, outIdx: -1}
		if d.ID != nil {
			ep.FnIndex = *d.ID
		}
		var params []probeParam
		var returns []probeOutput
		if info != nil {
			ie, listed := info.NamedEndpoints[name]
			if !listed {
				// Hidden from the API page (show_api=False and the like).
				continue
			}
			params = ie.Parameters
			for j, r := range ie.Returns {
				returns = append(returns, probeOutput{Index: j, Label: r.Label, Component: r.Component})
			}
		} else if d.ShowAPI != nil && !*d.ShowAPI {
			continue
		}
		ep.fill(comps, params, returns)
		rep.Endpoints = append(rep.Endpoints, ep)
	}
}

// probeGet GETs a JSON document from the app into v.
func probeGet(ctx context.Context, u, token string, timeout time.Duration, v any) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return usageErrorf("building the request for %s: %v", u, err)
	}
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reading %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody+1))
	if err != nil {
		return fmt.Errorf("reading %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		code := exitForStatus(resp.StatusCode)
		if code == ExitFailure && resp.StatusCode >= 500 {
			code = ExitUpstream
		}
		return &ExitError{Code: code, Err: fmt.Errorf("reading %s: HTTP %d: %s", u, resp.StatusCode, msg)}
	}
	if len(body) > maxProbeBody {
		return fmt.Errorf("reading %s: larger than %d MiB", u, maxProbeBody>>20)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("reading %s: not the JSON of a Gradio app: %w", u, err)
	}
	return nil
}

// fill describes the endpoint's inputs and outputs from /config, with the
// names and defaults of /info when it lists them.
func (ep *probeEndpoint) fill(comps map[int]probeComponent, params []probeParam, returns []probeOutput) {
	// /info leaves out State inputs (and skip_api components); the rest
	// line up with the dependency's inputs in order.
	visible := 0
	for _, id := range ep.dep.Inputs {
		if c, ok := comps[id]; ok && !hiddenFromAPI(c) {
			visible++
		}
	}
	useParams := params != nil && len(params) == visible
	pi := 0
	for pos, id := range ep.dep.Inputs {
		c := comps[id]
		in := probeInput{Position: pos, Component: componentName(c.Type)}
		if l, ok := c.Props["label"].(string); ok {
			in.Label = l
		}
		if v, ok := c.Props["value"]; ok {
			in.Default, in.HasDefault = v, true
		}
		if useParams && !hiddenFromAPI(c) {
			p := params[pi]
			pi++
			in.Name, in.HasDefault, in.Default = p.ParameterName, p.HasDefault, p.Default
			if p.Label != "" {
				in.Label = p.Label
			}
			if p.Component != "" {
				in.Component = p.Component
			}
		}
		in.Minimum, in.Maximum, in.Step = propNum(c.Props, "minimum"), propNum(c.Props, "maximum"), propNum(c.Props, "step")
		in.Choices = propChoices(c.Props)
		ep.Inputs = append(ep.Inputs, in)
	}
	if returns != nil && len(returns) == len(ep.dep.Outputs) {
		ep.Outputs = returns
	} else {
		ep.Outputs = nil
		for j, id := range ep.dep.Outputs {
			c := comps[id]
			l, _ := c.Props["label"].(string)
			ep.Outputs = append(ep.Outputs, probeOutput{Index: j, Label: l, Component: componentName(c.Type)})
		}
	}
	for _, out := range ep.Outputs {
		if out.Component == "Image" || out.Component == "Gallery" {
			ep.Image = true
			ep.outIdx = out.Index
			break
		}
	}
	ep.mapped = mapInputs(ep)
	for i, m := range ep.mapped {
		ep.Inputs[i].From = m.in.From
		ep.Inputs[i].Mapped = m.todo == ""
		ep.Inputs[i].Note = m.note
		if m.todo != "" {
			ep.Inputs[i].Note = m.todo
		}
	}
}

func hiddenFromAPI(c probeComponent) bool {
	return c.SkipAPI || strings.EqualFold(c.Type, "state")
}

// componentName turns /config's "imageslider" into /info's "ImageSlider"
// style; only the first letter matters for comparison with /info names.
func componentName(t string) string {
	switch strings.ToLower(t) {
	case "":
		return "Unknown"
	case "imageslider":
		return "ImageSlider"
	case "imageeditor":
		return "ImageEditor"
	case "checkboxgroup":
		return "CheckboxGroup"
	}
	return strings.ToUpper(t[:1]) + strings.ToLower(t[1:])
}

func propNum(props map[string]any, k string) *float64 {
	if v, ok := props[k].(float64); ok {
		return &v
	}
	return nil
}

// propChoices reads a Dropdown's or Radio's choices: strings or
// [label, value] pairs, of which the value is sent.
func propChoices(props map[string]any) []string {
	raw, _ := props["choices"].([]any)
	var out []string
	for _, ch := range raw {
		switch v := ch.(type) {
		case string:
			out = append(out, v)
		case []any:
			if len(v) == 2 {
				if s, ok := v[1].(string); ok {
					out = append(out, s)
				} else if s, ok := v[0].(string); ok {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// mappedInput is one input of the suggested backend.
type mappedInput struct {
	in gradio.Input
	// constant is true when the input sends Value (possibly null).
	constant bool
	note     string // line comment
	todo     string // head comment: what needs a person's check
}

// wxhRE reads a choice's leading "WxH" the way the gradio backend does
// (x, X or ×, spaces around it), so a mapped size_choice works at run time.
var wxhRE = regexp.MustCompile(`^\s*(\d{2,5}) *[xX×] *(\d{2,5})`)

func parseChoiceWxH(s string) (int, int, bool) {
	m := wxhRE.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, false
	}
	w, _ := strconv.Atoi(m[1])
	h, _ := strconv.Atoi(m[2])
	return w, h, w > 0 && h > 0
}

func allWxH(choices []string) bool {
	if len(choices) == 0 {
		return false
	}
	for _, c := range choices {
		if _, _, ok := parseChoiceWxH(c); !ok {
			return false
		}
	}
	return true
}

func isNumeric(component string) bool {
	switch strings.ToLower(component) {
	case "slider", "number":
		return true
	}
	return false
}

func isText(component string) bool {
	switch strings.ToLower(component) {
	case "textbox", "textarea", "text", "multimodaltextbox":
		return true
	}
	return false
}

// mapInputs decides, input by input, which request field feeds it.
func mapInputs(ep *probeEndpoint) []mappedInput {
	used := map[string]bool{}
	isOutput := map[int]bool{}
	for _, id := range ep.dep.Outputs {
		isOutput[id] = true
	}
	take := func(from string) bool {
		if used[from] {
			return false
		}
		used[from] = true
		return true
	}
	out := make([]mappedInput, len(ep.Inputs))
	for i, in := range ep.Inputs {
		comp := strings.ToLower(in.Component)
		key := strings.ToLower(in.Name + " " + in.Label)
		words := strings.FieldsFunc(key, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
		})
		has := func(w string) bool {
			for _, x := range words {
				if x == w {
					return true
				}
			}
			return false
		}
		contains := func(s string) bool { return strings.Contains(key, s) }
		m := mappedInput{}
		from := ""
		switch {
		case comp == "state":
			m.constant = true
			m.note = "sent as null, the app keeps it per session"
		case comp == "image" || comp == "imageeditor":
			if take("image") {
				from = "image"
			}
		case comp == "gallery" && isOutput[ep.dep.Inputs[i]]:
			// The app feeds its own result gallery back in (a history);
			// a fresh session has none.
			m.constant, m.in.Value = true, []any{}
			m.note = "the endpoint's own output gallery (history): sent empty"
		case comp == "gallery":
			if take("images") {
				from = "images"
			}
		case (comp == "dropdown" || comp == "radio") && allWxH(in.Choices):
			if take("size_choice") {
				from = "size_choice"
			}
		case isText(comp) && (contains("negative") || has("neg")):
			if take("negative_prompt") {
				from = "negative_prompt"
			}
		case isText(comp) && (contains("prompt") || has("text") || has("caption") || has("description") || has("instruction")):
			if take("prompt") {
				from = "prompt"
			}
		case comp == "checkbox" && contains("random"):
			if take("randomize_seed") {
				from = "randomize_seed"
			}
		case isNumeric(comp) && contains("seed"):
			if take("seed") {
				from = "seed"
			}
		case isNumeric(comp) && has("width"):
			if take("width") {
				from = "width"
			}
		case isNumeric(comp) && has("height"):
			if take("height") {
				from = "height"
			}
		case isNumeric(comp) && contains("step"):
			if take("steps") {
				from = "steps"
			}
		}
		label := in.Name
		if label == "" {
			label = in.Label
		}
		desc := fmt.Sprintf("%q (%s", label, in.Component)
		if label == "" {
			desc = "(" + in.Component
		}
		switch {
		case from != "":
			m.in.From = from
			m.note = desc + ")"
			switch from {
			case "width", "height", "steps", "seed":
				m.in.Type = "int"
				if from == "seed" || from == "steps" {
					if d, ok := intDefault(in); ok {
						m.in.Default = d
					}
				}
			case "randomize_seed":
				m.in.Type = "bool"
			case "size_choice":
				m.note = fmt.Sprintf("%s, %d choices read from the app at run time)", desc, len(in.Choices))
			}
		case m.constant:
			m.note = desc + "): " + m.note
		default:
			m.constant = true
			if in.HasDefault {
				m.in.Value = in.Default
				m.todo = fmt.Sprintf("TODO: could not map input %d %s, default %s); sent as its default", i+1, desc, compactJSON(in.Default))
			} else {
				m.todo = fmt.Sprintf("TODO: could not map input %d %s, no default); sent as null: set a value", i+1, desc)
			}
		}
		out[i] = m
	}
	return out
}

func intDefault(in probeInput) (int, bool) {
	f, ok := in.Default.(float64)
	if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int(f), true
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	s := string(b)
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}

// buildSnippet makes the backend entry for the endpoint as a YAML node
// with comments, and as data for --json.
func (ep *probeEndpoint) buildSnippet(name, space string) error {
	g := &gradio.Config{Space: space, APIName: ep.APIName}
	if ep.outIdx >= 0 {
		idx := ep.outIdx
		g.Output.Index = &idx
		if ep.Outputs[idx].Component == "Gallery" {
			g.Output.Kind = "gallery"
		} else {
			g.Output.Kind = "image"
		}
	}
	g.Output.SeedIndex = seedOutput(ep.Outputs)
	g.Size = ep.sizeConfig()
	g.Steps = ep.stepsConfig()
	b := config.Backend{Name: name, Type: "gradio", Gradio: g}

	var doc yaml.Node
	if err := doc.Encode([]config.Backend{b}); err != nil {
		return fmt.Errorf("encoding the snippet: %w", err)
	}
	item := doc.Content[0]
	gnode := mapValue(item, "gradio")
	if gnode == nil {
		return errors.New("encoding the snippet: no gradio section")
	}
	inputs, err := ep.inputsNode()
	if err != nil {
		return err
	}
	replaced := false
	for k := 0; k+1 < len(gnode.Content); k += 2 {
		if gnode.Content[k].Value == "inputs" {
			gnode.Content[k+1] = inputs
			replaced = true
		}
	}
	if !replaced {
		return errors.New("encoding the snippet: no inputs key")
	}
	if ep.outIdx < 0 {
		item.HeadComment = "TODO: the endpoint lists no Image or Gallery output; set output.index and output.kind"
	}
	ep.snippet = &doc

	// The same entry as data, through YAML so the keys are the config's.
	raw, err := yaml.Marshal(&doc)
	if err != nil {
		return fmt.Errorf("encoding the snippet: %w", err)
	}
	var data []map[string]any
	if err := yaml.Unmarshal(raw, &data); err != nil || len(data) != 1 {
		return fmt.Errorf("re-reading the snippet: %v", err)
	}
	ep.Backend = data[0]
	return nil
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for k := 0; k+1 < len(n.Content); k += 2 {
		if n.Content[k].Value == key {
			return n.Content[k+1]
		}
	}
	return nil
}

// inputsNode writes the inputs by hand: a struct would drop constants
// such as 0, false, [] and null, which the endpoint still needs sent.
func (ep *probeEndpoint) inputsNode() (*yaml.Node, error) {
	seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for _, m := range ep.mapped {
		mn := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		add := func(k string, v any) error {
			var vn yaml.Node
			if err := vn.Encode(v); err != nil {
				return fmt.Errorf("encoding input value: %w", err)
			}
			if vn.Kind == yaml.SequenceNode || vn.Kind == yaml.MappingNode {
				vn.Style = yaml.FlowStyle
			}
			mn.Content = append(mn.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, &vn)
			return nil
		}
		var err error
		if m.constant {
			err = add("value", m.in.Value)
		} else {
			err = add("from", m.in.From)
			if err == nil && m.in.Type != "" {
				err = add("type", m.in.Type)
			}
			if err == nil && m.in.Default != nil {
				err = add("default", m.in.Default)
			}
		}
		if err != nil {
			return nil, err
		}
		mn.Content[1].LineComment = commentText(m.note)
		if m.todo != "" {
			mn.HeadComment = commentText(m.todo)
		}
		seq.Content = append(seq.Content, mn)
	}
	return seq, nil
}

// seedOutput finds the output holding the seed used: a Number labelled
// seed, else a Textbox labelled seed.
func seedOutput(outs []probeOutput) *int {
	best := -1
	for _, o := range outs {
		if !strings.Contains(strings.ToLower(o.Label), "seed") {
			continue
		}
		if o.Component == "Number" || o.Component == "Slider" {
			best = o.Index
			break
		}
		if o.Component == "Textbox" && best < 0 {
			best = o.Index
		}
	}
	if best < 0 {
		return nil
	}
	return &best
}

// sizeConfig derives the size bounds from the width and height sliders or
// from the resolution choices.
func (ep *probeEndpoint) sizeConfig() gradio.SizeConfig {
	var s gradio.SizeConfig
	var sides []probeInput
	for i, m := range ep.mapped {
		in := ep.Inputs[i]
		switch m.in.From {
		case "width", "height":
			sides = append(sides, in)
			if d, ok := intDefault(in); ok {
				if m.in.From == "width" {
					s.DefaultWidth = d
				} else {
					s.DefaultHeight = d
				}
			}
		case "size_choice":
			return choiceSize(in)
		}
	}
	for k, in := range sides {
		lo, hi, st := floatOr(in.Minimum), floatOr(in.Maximum), floatOr(in.Step)
		if k == 0 {
			s.Min, s.Max, s.Multiple = lo, hi, st
			continue
		}
		s.Min, s.Max = max(s.Min, lo), minPositive(s.Max, hi)
		if st != s.Multiple {
			s.Multiple = max(s.Multiple, st)
		}
	}
	if s.Multiple <= 1 {
		s.Multiple = 0
	}
	// Keep only what the config validation accepts.
	for _, d := range []*int{&s.DefaultWidth, &s.DefaultHeight} {
		if *d > 0 && ((s.Min > 0 && *d < s.Min) || (s.Max > 0 && *d > s.Max) || (s.Multiple > 0 && *d%s.Multiple != 0)) {
			*d = 0
		}
	}
	if s.Min > 0 && s.Max > 0 && s.Min > s.Max {
		s.Min, s.Max = 0, 0
	}
	return s
}

func floatOr(f *float64) int {
	if f == nil || *f < 0 || *f > 16384 || *f != math.Trunc(*f) {
		return 0
	}
	return int(*f)
}

func minPositive(a, b int) int {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

// choiceSize bounds sizes by the choices' sides; multiple is their common
// divisor, capped at 64.
func choiceSize(in probeInput) gradio.SizeConfig {
	var s gradio.SizeConfig
	g := 0
	for _, c := range in.Choices {
		w, h, _ := parseChoiceWxH(c)
		for _, v := range []int{w, h} {
			if s.Min == 0 || v < s.Min {
				s.Min = v
			}
			s.Max = max(s.Max, v)
			g = gcd(g, v)
		}
	}
	if g > 1 {
		s.Multiple = min(g, 64)
		for 64%s.Multiple != 0 && s.Multiple > 1 {
			s.Multiple--
		}
	}
	if d, ok := in.Default.(string); ok {
		if w, h, ok := parseChoiceWxH(d); ok && (s.Multiple == 0 || (w%s.Multiple == 0 && h%s.Multiple == 0)) {
			s.DefaultWidth, s.DefaultHeight = w, h
		}
	}
	return s
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// stepsConfig takes the steps slider's default and range.
func (ep *probeEndpoint) stepsConfig() gradio.StepsConfig {
	for i, m := range ep.mapped {
		if m.in.From != "steps" {
			continue
		}
		in := ep.Inputs[i]
		st := gradio.StepsConfig{Min: floatOr(in.Minimum), Max: floatOr(in.Maximum)}
		if d, ok := intDefault(in); ok && d > 0 {
			st.Default = d
		}
		if st.Min > 0 && st.Max > 0 && st.Min > st.Max {
			st.Min, st.Max = 0, 0
		}
		if st.Default > 0 && ((st.Min > 0 && st.Default < st.Min) || (st.Max > 0 && st.Default > st.Max)) {
			st.Default = 0
		}
		return st
	}
	return gradio.StepsConfig{}
}

// writeProbeText prints the endpoint list and the snippets as YAML
// comments and entries, so the whole output can be pasted under
// "backends:".
func writeProbeText(w io.Writer, rep *probeReport, chosen []*probeEndpoint) error {
	var buf bytes.Buffer
	comment := func(format string, args ...any) {
		buf.WriteString("# " + commentText(fmt.Sprintf(format, args...)) + "\n")
	}
	prefix := rep.APIPrefix
	if prefix == "" {
		prefix = "none"
	}
	comment("%s: Gradio %s, protocol %s, API prefix %s", rep.Space, orDash(rep.GradioVersion), orDash(rep.Protocol), prefix)
	for _, warn := range rep.Warnings {
		comment("WARNING: %s", warn)
	}
	if len(rep.Endpoints) == 0 {
		comment("The app lists no named endpoints.")
	} else {
		comment("Endpoints:")
	}
	width := 0
	for _, e := range rep.Endpoints {
		width = min(max(width, len(e.APIName)), 40)
	}
	for _, e := range rep.Endpoints {
		ins := make([]string, 0, len(e.Inputs))
		for _, in := range e.Inputs {
			n := in.Name
			if n == "" {
				n = in.Component
			}
			ins = append(ins, n)
		}
		outs := make([]string, 0, len(e.Outputs))
		for _, o := range e.Outputs {
			outs = append(outs, o.Component)
		}
		mark := ""
		if e.Image {
			mark = "  [image]"
		}
		comment("  %-*s (%s) -> (%s)%s", width, e.APIName, strings.Join(ins, ", "), strings.Join(outs, ", "), mark)
	}
	if len(chosen) == 0 {
		comment("No endpoint returns an Image or Gallery; pick one with --endpoint.")
	}
	for _, ep := range chosen {
		todos := 0
		for _, m := range ep.mapped {
			if m.todo != "" {
				todos++
			}
		}
		buf.WriteString("\n")
		comment("Backend for %s: paste under \"backends:\" and add its name to a model.", ep.APIName)
		if todos > 0 {
			comment("%d input(s) marked TODO need a look; inputs are numbered from 1.", todos)
		}
		var y bytes.Buffer
		enc := yaml.NewEncoder(&y)
		enc.SetIndent(2)
		if err := enc.Encode(ep.snippet); err != nil {
			return fmt.Errorf("writing the snippet: %w", err)
		}
		if err := enc.Close(); err != nil {
			return fmt.Errorf("writing the snippet: %w", err)
		}
		for _, line := range strings.SplitAfter(strings.TrimRight(y.String(), "\n")+"\n", "\n") {
			if line == "" {
				continue
			}
			buf.WriteString("  " + line)
		}
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// commentText keeps text from the app on one comment line: a line break
// in a label would otherwise end the comment and inject YAML.
func commentText(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 {
			return ' '
		}
		return r
	}, s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
