package openaiapi

import (
	"net/http"

	"github.com/easelgw/easel/internal/gen"
	"github.com/easelgw/easel/internal/provider"
)

// modelObject is OpenAI's Model plus an "easel" extension object that
// OpenAI clients ignore and easel's own UI reads.
type modelObject struct {
	ID      string      `json:"id"`
	Object  string      `json:"object"`
	Created int64       `json:"created"`
	OwnedBy string      `json:"owned_by"`
	Easel   modelExtras `json:"easel"`
}

type modelExtras struct {
	Description  string                `json:"description,omitempty"`
	Demo         bool                  `json:"demo,omitempty"`
	Aliases      []string              `json:"aliases,omitempty"`
	Capabilities provider.Capabilities `json:"capabilities"`
}

type modelList struct {
	Object string        `json:"object"`
	Data   []modelObject `json:"data"`
}

func toModelObject(m gen.ModelInfo) modelObject {
	var created int64
	if !m.Created.IsZero() {
		created = m.Created.Unix()
	}
	return modelObject{
		ID:      m.ID,
		Object:  "model",
		Created: created,
		OwnedBy: "easel",
		Easel: modelExtras{
			Description:  m.Description,
			Demo:         m.Demo,
			Aliases:      m.Aliases,
			Capabilities: m.Capabilities,
		},
	}
}

func (a *API) handleListModels(w http.ResponseWriter, _ *http.Request) {
	list := modelList{Object: "list", Data: []modelObject{}}
	for _, m := range a.svc.Models() {
		list.Data = append(list.Data, toModelObject(m))
	}
	writeJSON(w, http.StatusOK, list)
}

// handleGetModel serves /v1/models/{id...}: the id arrives decoded whether
// the client sent "a%2Fb" or a raw "a/b".
func (a *API) handleGetModel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	m, ok := a.svc.Model(id)
	if !ok {
		a.writeError(w, r, &gen.NotFoundError{Model: id})
		return
	}
	writeJSON(w, http.StatusOK, toModelObject(m))
}
