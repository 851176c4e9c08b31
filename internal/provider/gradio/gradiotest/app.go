package gradiotest

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Endpoint is one dependency of the fake app (one event listener in Gradio
// terms). Its position in Options.Endpoints is its fn_index.
type Endpoint struct {
	// APIName is the endpoint name without the leading slash, e.g. "generate_image".
	APIName string
	// Inputs are the positional inputs, in order.
	Inputs []Component
	// Outputs are the output components, in order.
	Outputs []Component
	// Run is the scenario played for each event of this endpoint. Nil means
	// an endpoint that returns its outputs' initial values.
	Run RunFunc
	// Trigger is the id of the component whose event fires this endpoint;
	// zero adds a dedicated button.
	Trigger int
	// TriggerEvent is the event name in targets (default "click").
	TriggerEvent string
	// AlsoOn lists further targets of the same dependency, as
	// gr.on(triggers=[btn.click, prompt.submit]) produces.
	AlsoOn []Trigger
	// Visibility is "public" (default), "undocumented" or "private"; only
	// public endpoints are listed in /info.
	Visibility string
	// Validate, when set, runs at join time like Gradio's validator=; any
	// returned problem rejects the join with 422.
	Validate func(data []any) []Invalid
}

// Trigger is one [component id, event name] target.
type Trigger struct {
	// ID is the component id.
	ID int
	// Event is the event name, e.g. "click", "submit", "change".
	Event string
}

// Invalid is one validator complaint about a parameter.
type Invalid struct {
	// Parameter is the Python parameter name.
	Parameter string
	// Message is the text shown to the user.
	Message string
}

// Component is one Gradio component used as an input or output.
type Component struct {
	// ID is the component id in /config; zero assigns one. Endpoints that
	// share a component (a seed box used by two listeners) give it the same ID.
	ID int
	// Type is the config type: "textbox", "slider", "number", "checkbox",
	// "dropdown", "image", "gallery", "state", "button", "json", …
	Type string
	// Label is the component label.
	Label string
	// Name is the Python parameter name reported in /info (param_N if empty).
	Name string
	// Value is the initial value, which /info reports as the parameter
	// default; nil means none.
	Value any
	// Props are extra props (minimum, maximum, step, choices, format, precision…).
	Props map[string]any
}

// endpoint is an Endpoint resolved against the component table.
type endpoint struct {
	Endpoint
	fnIndex   int
	inputIDs  []int
	outputIDs []int
	trigger   int
}

// appLayout is the static part of /config and /info.
type appLayout struct {
	components []Component // sorted by id
	byID       map[int]Component
	heartbeat  bool
}

func (s *Server) buildApp() error {
	lay := &appLayout{byID: map[int]Component{}}
	used := map[int]bool{0: true}
	for _, ep := range s.opts.Endpoints {
		for _, c := range append(append([]Component{}, ep.Inputs...), ep.Outputs...) {
			if c.ID != 0 {
				used[c.ID] = true
			}
		}
		if ep.Trigger != 0 {
			used[ep.Trigger] = true
		}
		for _, t := range ep.AlsoOn {
			used[t.ID] = true
		}
	}
	// Auto ids start past a few layout ids and leave gaps between
	// endpoints, so clients cannot take list positions for ids.
	next := 3
	alloc := func() int {
		for used[next] {
			next++
		}
		used[next] = true
		return next
	}
	register := func(c Component) (int, error) {
		if c.Type == "" {
			return 0, fmt.Errorf("component %q has no type", c.Label)
		}
		if c.ID == 0 {
			c.ID = alloc()
		}
		if old, ok := lay.byID[c.ID]; ok {
			if old.Type != c.Type {
				return 0, fmt.Errorf("component id %d used as both %s and %s", c.ID, old.Type, c.Type)
			}
			return c.ID, nil
		}
		lay.byID[c.ID] = c
		if c.Type == "state" {
			lay.heartbeat = true
		}
		return c.ID, nil
	}
	for i, e := range s.opts.Endpoints {
		if e.APIName == "" || strings.HasPrefix(e.APIName, "/") {
			return fmt.Errorf("endpoint %d: api name %q must be non-empty and have no leading slash", i, e.APIName)
		}
		if _, dup := s.byName[e.APIName]; dup {
			return fmt.Errorf("endpoint %d: duplicate api name %q", i, e.APIName)
		}
		ep := &endpoint{Endpoint: e, fnIndex: i}
		if ep.TriggerEvent == "" {
			ep.TriggerEvent = "click"
		}
		if ep.Visibility == "" {
			ep.Visibility = "public"
		}
		for _, c := range e.Inputs {
			id, err := register(c)
			if err != nil {
				return fmt.Errorf("endpoint %s input: %w", e.APIName, err)
			}
			ep.inputIDs = append(ep.inputIDs, id)
		}
		for _, c := range e.Outputs {
			id, err := register(c)
			if err != nil {
				return fmt.Errorf("endpoint %s output: %w", e.APIName, err)
			}
			ep.outputIDs = append(ep.outputIDs, id)
		}
		ep.trigger = e.Trigger
		if ep.trigger == 0 {
			ep.trigger, _ = register(Component{Type: "button", Props: map[string]any{"value": "Run"}})
		} else if _, ok := lay.byID[ep.trigger]; !ok {
			_, _ = register(Component{ID: ep.trigger, Type: "button", Props: map[string]any{"value": "Run"}})
		}
		for _, t := range e.AlsoOn {
			if _, ok := lay.byID[t.ID]; !ok {
				_, _ = register(Component{ID: t.ID, Type: "button", Props: map[string]any{"value": "Run"}})
			}
		}
		next += 2
		s.endpoints = append(s.endpoints, ep)
		s.byName[e.APIName] = ep
	}
	for _, c := range lay.byID {
		lay.components = append(lay.components, c)
	}
	sort.Slice(lay.components, func(i, j int) bool { return lay.components[i].ID < lay.components[j].ID })
	s.app = lay
	return nil
}

// componentInfo describes how /config and /info present a component type.
type componentInfo struct {
	class   string
	skipAPI bool
	apiType any
	pyType  object
	example any
}

func imageDataSchema() object {
	return object{
		{"properties", object{
			{"path", object{{"anyOf", []any{object{{"type", "string"}}, object{{"type", "null"}}}}, {"default", nil}, {"title", "Path"}}},
			{"url", object{{"anyOf", []any{object{{"type", "string"}}, object{{"type", "null"}}}}, {"default", nil}, {"title", "Url"}}},
			{"size", object{{"anyOf", []any{object{{"type", "integer"}}, object{{"type", "null"}}}}, {"default", nil}, {"title", "Size"}}},
			{"orig_name", object{{"anyOf", []any{object{{"type", "string"}}, object{{"type", "null"}}}}, {"default", nil}, {"title", "Orig Name"}}},
			{"mime_type", object{{"anyOf", []any{object{{"type", "string"}}, object{{"type", "null"}}}}, {"default", nil}, {"title", "Mime Type"}}},
			{"is_stream", object{{"default", false}, {"title", "Is Stream"}, {"type", "boolean"}}},
			{"meta", object{{"default", object{{"_type", "gradio.FileData"}}}, {"title", "Meta"}, {"type", "object"}}},
		}},
		{"title", "ImageData"},
		{"type", "object"},
	}
}

func describe(c Component) componentInfo {
	str := func(t string) object { return object{{"type", t}, {"description", ""}} }
	switch c.Type {
	case "textbox":
		return componentInfo{"Textbox", false, object{{"type", "string"}}, str("str"), "Hello!!"}
	case "slider":
		desc := fmt.Sprintf("numeric value between %v and %v", propOr(c, "minimum", 0), propOr(c, "maximum", 100))
		return componentInfo{"Slider", false, object{{"type", "number"}, {"description", desc}},
			object{{"type", "float"}, {"description", desc}}, propOr(c, "minimum", 0)}
	case "number":
		if p, ok := c.Props["precision"]; ok && fmt.Sprint(p) == "0" {
			return componentInfo{"Number", false, object{{"type", "integer"}}, str("int"), 3}
		}
		return componentInfo{"Number", false, object{{"type", "number"}}, str("float"), 3}
	case "checkbox":
		return componentInfo{"Checkbox", false, object{{"type", "boolean"}}, str("bool"), true}
	case "dropdown":
		choices := choiceValues(c)
		enum := make([]any, len(choices))
		quoted := make([]string, len(choices))
		for i, ch := range choices {
			enum[i] = ch
			quoted[i] = "'" + ch + "'"
		}
		var ex any
		if len(choices) > 0 {
			ex = choices[0]
		}
		return componentInfo{"Dropdown", false, object{{"enum", enum}, {"title", "Dropdown"}, {"type", "string"}},
			str("Literal[" + strings.Join(quoted, ", ") + "]"), ex}
	case "image":
		return componentInfo{"Image", false, imageDataSchema(), str("filepath"),
			object{{"path", "https://raw.githubusercontent.com/gradio-app/gradio/main/test/test_files/bus.png"}, {"meta", fileMeta()}}}
	case "gallery":
		item := object{{"type", "object"}, {"properties", object{
			{"image", imageDataSchema()},
			{"caption", object{{"anyOf", []any{object{{"type", "string"}}, object{{"type", "null"}}}}}},
		}}}
		return componentInfo{"Gallery", false, object{{"items", item}, {"title", "Gallery"}, {"type", "array"}},
			str("List[Dict(image: filepath, caption: str | None)]"), []any{}}
	case "state":
		return componentInfo{"State", true, object{}, str("Any"), nil}
	case "button":
		return componentInfo{"Button", false, object{{"type", "string"}}, str("str"), "Hello!!"}
	case "json":
		return componentInfo{"JSON", false, object{{"type", object{}}, {"description", "any valid json"}}, str("Dict[Any, Any] | List[Any]"), nil}
	default:
		name := c.Type
		if name != "" {
			name = strings.ToUpper(name[:1]) + name[1:]
		}
		return componentInfo{name, false, object{{"type", object{}}}, str("Any"), nil}
	}
}

func propOr(c Component, key string, def any) any {
	if v, ok := c.Props[key]; ok {
		return v
	}
	return def
}

// choiceValues returns a dropdown's choices as strings; Props["choices"] may
// be []string or []any.
func choiceValues(c Component) []string {
	switch v := c.Props["choices"].(type) {
	case []string:
		return v
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			out = append(out, fmt.Sprint(x))
		}
		return out
	}
	return nil
}

func (s *Server) componentConfig(c Component) object {
	info := describe(c)
	props := object{}
	if c.Label != "" {
		props = append(props, kv{"label", c.Label})
	}
	keys := make([]string, 0, len(c.Props))
	for k := range c.Props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := c.Props[k]
		if k == "choices" {
			pairs := []any{}
			for _, ch := range choiceValues(c) {
				pairs = append(pairs, []any{ch, ch})
			}
			v = pairs
		}
		if v != nil {
			props = append(props, kv{k, v})
		}
	}
	if c.Value != nil {
		props = append(props, kv{"value", c.Value})
	}
	if _, ok := c.Props["visible"]; !ok {
		props = append(props, kv{"visible", true})
	}
	props = append(props, kv{"name", c.Type})
	o := object{{"id", c.ID}, {"type", c.Type}, {"props", props}, {"skip_api", info.skipAPI}, {"component_class_id", c.Type}}
	if !info.skipAPI {
		o = append(o, kv{"api_info", info.apiType})
	}
	return o
}

func (s *Server) dependencyConfig(ep *endpoint) object {
	o := object{
		{"id", ep.fnIndex},
		{"targets", ep.targets()},
		{"inputs", ep.inputIDs},
		{"outputs", ep.outputIDs},
		{"backend_fn", true},
		{"js", nil},
		{"queue", true},
		{"api_name", ep.APIName},
		{"scroll_to_output", false},
		{"show_progress", "full"},
		{"batch", false},
		{"max_batch_size", 4},
		{"cancels", []any{}},
		{"types", object{{"generator", false}, {"cancel", false}}},
		{"collects_event_data", false},
		{"trigger_after", nil},
		{"trigger_only_on_success", false},
		{"trigger_mode", "once"},
	}
	if s.opts.Version >= 6 {
		o = append(o, kv{"api_visibility", ep.Visibility})
	} else {
		o = append(o, kv{"show_api", ep.Visibility == "public"})
	}
	o = append(o, kv{"rendered_in", nil}, kv{"connection", "sse"}, kv{"time_limit", nil}, kv{"stream_every", 0.5})
	return o
}

func (s *Server) handleConfig(w http.ResponseWriter, r *http.Request) {
	root := rootURL(r)
	comps := make([]any, 0, len(s.app.components))
	ids := make([]any, 0, len(s.app.components))
	children := make([]any, 0, len(s.app.components))
	for _, c := range s.app.components {
		comps = append(comps, s.componentConfig(c))
		ids = append(ids, c.ID)
		children = append(children, object{{"id", c.ID}})
	}
	deps := make([]any, 0, len(s.endpoints))
	depIDs := make([]any, 0, len(s.endpoints))
	for _, ep := range s.endpoints {
		deps = append(deps, s.dependencyConfig(ep))
		depIDs = append(depIDs, ep.fnIndex)
	}
	layout := object{{"id", 0}, {"children", children}}
	o := object{{"version", s.version}}
	if s.prefix != "" {
		o = append(o, kv{"api_prefix", s.prefix})
	}
	o = append(o,
		kv{"mode", "blocks"},
		kv{"app_id", s.appID},
		kv{"dev_mode", false},
		kv{"analytics_enabled", false},
		kv{"components", comps},
		kv{"css", nil},
		kv{"connect_heartbeat", s.app.heartbeat},
		kv{"js", nil},
		kv{"head", nil},
		kv{"title", "Gradio"},
		kv{"space_id", nullIfEmpty(s.opts.SpaceID)},
		kv{"enable_queue", true},
		kv{"show_error", s.opts.ShowError},
		kv{"is_colab", false},
		kv{"max_file_size", nullIfZero(s.opts.MaxFileSize)},
		kv{"stylesheets", []any{}},
		kv{"theme", "default"},
	)
	if s.opts.Protocol != "none" {
		o = append(o, kv{"protocol", s.opts.Protocol})
	}
	o = append(o, kv{"body_css", nil}, kv{"fill_height", false}, kv{"fill_width", false})
	if s.opts.Version >= 6 {
		o = append(o,
			kv{"page", object{{"", object{{"components", ids}, {"dependencies", depIDs}, {"layout", layout}}}}},
			kv{"pages", []any{[]any{"", "Home", true}}},
		)
	} else {
		o = append(o, kv{"layout", layout})
	}
	o = append(o, kv{"dependencies", deps}, kv{"root", root}, kv{"username", nil})
	writeJSON(w, http.StatusOK, o)
}

func nullIfEmpty(v string) any {
	if v == "" {
		return nil
	}
	return v
}

func nullIfZero(v int64) any {
	if v == 0 {
		return nil
	}
	return v
}

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) {
	all := r.URL.Query().Get("all_endpoints") != ""
	named := object{}
	for _, ep := range s.endpoints {
		if ep.Visibility == "private" || (ep.Visibility != "public" && !all) {
			continue
		}
		params := []any{}
		for i, c := range ep.Inputs {
			info := describe(c)
			if info.skipAPI {
				continue
			}
			name := c.Name
			if name == "" {
				name = fmt.Sprintf("param_%d", i)
			}
			params = append(params, object{
				{"label", c.Label},
				{"parameter_name", name},
				{"parameter_has_default", c.Value != nil},
				{"parameter_default", c.Value},
				{"type", info.apiType},
				{"python_type", info.pyType},
				{"component", info.class},
				{"example_input", info.example},
			})
		}
		returns := []any{}
		for _, c := range ep.Outputs {
			info := describe(c)
			if info.skipAPI {
				continue
			}
			returns = append(returns, object{
				{"label", c.Label},
				{"type", info.apiType},
				{"python_type", info.pyType},
				{"component", info.class},
			})
		}
		e := object{{"parameters", params}, {"returns", returns}}
		if s.opts.Version >= 6 {
			e = append(e, kv{"api_visibility", ep.Visibility})
		} else {
			e = append(e, kv{"show_api", ep.Visibility == "public"})
		}
		e = append(e, kv{"description", ""})
		named = append(named, kv{"/" + ep.APIName, e})
	}
	writeJSON(w, http.StatusOK, object{{"named_endpoints", named}, {"unnamed_endpoints", object{}}})
}

// avgDur tracks the average run time of one endpoint, which Gradio reports
// as eta, rank_eta and average_duration once a function has run.
type avgDur struct {
	n     int
	total time.Duration
}

func (a *avgDur) mean() (float64, bool) {
	if a == nil || a.n == 0 {
		return 0, false
	}
	return (a.total / time.Duration(a.n)).Seconds(), true
}

func (ep *endpoint) targets() []any {
	t := []any{[]any{ep.trigger, ep.TriggerEvent}}
	for _, x := range ep.AlsoOn {
		ev := x.Event
		if ev == "" {
			ev = "click"
		}
		t = append(t, []any{x.ID, ev})
	}
	return t
}
