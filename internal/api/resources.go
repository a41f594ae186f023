package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/moatproject/moat/internal/gateway"
	"github.com/moatproject/moat/internal/store"
)

// maxResourceProblems bounds the problems one answer lists.
const maxResourceProblems = 100

// AppliedResource is what ApplyResource did.
type AppliedResource struct {
	Resource store.Resource
	// Created is true when no resource of this kind and name existed;
	// Changed when the stored spec changed (always, when Created).
	Created, Changed bool
}

// InUseError refuses to delete a resource others refer to.
type InUseError struct {
	Kind, Name string
	// Dependents name the referring resources, such as "Connector openai".
	Dependents []string
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("api: %s %s is used by %s; change or delete those first", e.Kind, e.Name, strings.Join(e.Dependents, ", "))
}

// Unwrap makes an InUseError a store.ErrConflict (409).
func (e *InUseError) Unwrap() error { return store.ErrConflict }

// resourceTypes are the gateway types of the kinds ApplyResource accepts.
var resourceTypes = map[string]reflect.Type{
	gateway.KindVendor:    reflect.TypeFor[gateway.Vendor](),
	gateway.KindConnector: reflect.TypeFor[gateway.Connector](),
	gateway.KindModel:     reflect.TypeFor[gateway.Model](),
}

// ResourceKinds lists the kinds ApplyResource accepts, in the order
// resources must be applied (a connector names a vendor, a model names
// connectors).
var ResourceKinds = []string{gateway.KindVendor, gateway.KindConnector, gateway.KindModel}

// ApplyResource decodes spec, the JSON of a gateway resource (its name,
// when present, must equal name), and stores it in one transaction after
// checking the whole set of resources it would make. It is the one path by
// which resources are written: the API's PUT and `moat serve --apply` both
// use it. Problems come back as a *gateway.ResourceError whose messages
// start with the field ("location: …").
//
// It does not reload a gateway: the caller does, after the commit.
func ApplyResource(ctx context.Context, st store.Store, kind, name string, spec []byte, now time.Time) (AppliedResource, error) {
	canonical, err := decodeResource(kind, name, spec)
	if err != nil {
		return AppliedResource{}, err
	}
	var out AppliedResource
	err = st.InTx(ctx, func(tx store.Tx) error {
		if err := lockResources(ctx, st, tx); err != nil {
			return err
		}
		stored, err := tx.ListResources(ctx, "")
		if err != nil {
			return err
		}
		existed := slices.ContainsFunc(stored, func(r store.Resource) bool { return r.Kind == kind && r.Name == name })
		stored = slices.DeleteFunc(stored, func(r store.Resource) bool { return r.Kind == kind && r.Name == name })
		stored = append(stored, store.Resource{Kind: kind, Name: name, Spec: canonical})
		all, err := DecodeResources(stored)
		if err != nil {
			return err
		}
		if err := all.Check(); err != nil {
			return err
		}
		res, changed, err := tx.PutResource(ctx, store.Resource{Kind: kind, Name: name, Spec: canonical, CreatedAt: now, UpdatedAt: now})
		if err != nil {
			return err
		}
		out = AppliedResource{Resource: res, Created: !existed, Changed: changed}
		return nil
	})
	if err != nil {
		return AppliedResource{}, err
	}
	return out, nil
}

// DeleteResource deletes a resource in one transaction, refusing with an
// *InUseError while another resource refers to it.
func DeleteResource(ctx context.Context, st store.Store, kind, name string) error {
	if _, ok := resourceTypes[kind]; !ok {
		return fmt.Errorf("api: unknown resource kind %q: %w", kind, store.ErrInvalid)
	}
	return st.InTx(ctx, func(tx store.Tx) error {
		if err := lockResources(ctx, st, tx); err != nil {
			return err
		}
		stored, err := tx.ListResources(ctx, "")
		if err != nil {
			return err
		}
		all, err := DecodeResources(stored)
		if err != nil {
			return err
		}
		if deps := all.Dependents(kind, name); len(deps) > 0 {
			return &InUseError{Kind: kind, Name: name, Dependents: deps}
		}
		return tx.DeleteResource(ctx, kind, name)
	})
}

// lockResources makes resource writers take turns until tx ends. The
// checks read every resource: two writers at once (on two nodes, say, one
// deleting a connector while the other puts a model naming it) would each
// pass on a set the other changes. On SQLite writers already take turns;
// on Postgres the lock lets reads through and queues other writers.
func lockResources(ctx context.Context, st store.Store, tx store.Tx) error {
	if st.Dialect() != store.Postgres {
		return nil
	}
	if _, err := tx.SQL().ExecContext(ctx, "LOCK TABLE resources IN SHARE ROW EXCLUSIVE MODE"); err != nil {
		return fmt.Errorf("api: lock resources: %w", err)
	}
	return nil
}

// DecodeResources decodes stored resources for the gateway. A stored spec
// that does not decode is a server fault: only ApplyResource writes them.
func DecodeResources(stored []store.Resource) (gateway.Resources, error) {
	var out gateway.Resources
	for _, r := range stored {
		var err error
		switch r.Kind {
		case gateway.KindVendor:
			var v gateway.Vendor
			err = json.Unmarshal(r.Spec, &v)
			out.Vendors = append(out.Vendors, v)
		case gateway.KindConnector:
			var c gateway.Connector
			err = json.Unmarshal(r.Spec, &c)
			out.Connectors = append(out.Connectors, c)
		case gateway.KindModel:
			var m gateway.Model
			err = json.Unmarshal(r.Spec, &m)
			out.Models = append(out.Models, m)
		}
		if err != nil {
			return gateway.Resources{}, fmt.Errorf("api: stored %s %s does not decode: %w", r.Kind, r.Name, err)
		}
	}
	return out, nil
}

// decodeResource decodes spec strictly into the kind's gateway type, sets
// its name, and returns its canonical JSON. Unknown fields, wrong types and
// a name other than the path's are all reported at once.
func decodeResource(kind, name string, spec []byte) ([]byte, error) {
	t, ok := resourceTypes[kind]
	if !ok {
		return nil, fmt.Errorf("api: unknown resource kind %q (want %s): %w", kind, strings.Join(ResourceKinds, ", "), store.ErrInvalid)
	}
	fail := func(msgs ...string) error {
		e := &gateway.ResourceError{}
		for _, m := range msgs {
			e.Problems = append(e.Problems, gateway.ResourceProblem{Kind: kind, Name: name, Message: m})
		}
		return e
	}
	var generic any
	if err := decodeJSON(spec, &generic); err != nil {
		return nil, fail("body: not valid JSON: " + jsonErrorText(err))
	}
	obj, ok := generic.(map[string]any)
	if !ok {
		return nil, fail("body: must be a JSON object")
	}
	var problems []string
	if n, present := obj["name"]; present {
		if s, _ := n.(string); s != name {
			problems = append(problems, "name: must equal the name in the path")
		}
	}
	unknownFields(obj, t, "", &problems)
	if len(problems) > 0 {
		return nil, fail(problems...)
	}
	v := reflect.New(t)
	if err := decodeJSON(spec, v.Interface()); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return nil, fail(fmt.Sprintf("%s: must be %s", typeErr.Field, article(typeErr.Type)))
		}
		return nil, fail("body: " + jsonErrorText(err))
	}
	v.Elem().FieldByName("Name").SetString(name)
	canonical, err := json.Marshal(v.Interface())
	if err != nil {
		return nil, fail("body: " + jsonErrorText(err))
	}
	// Readers decode the stored spec plainly: a free-form number they
	// could not read (1e400) would make every resource unloadable.
	if err := json.Unmarshal(canonical, reflect.New(t).Interface()); err != nil {
		return nil, fail("body: a number is out of range")
	}
	return canonical, nil
}

// decodeJSON decodes exactly one JSON value, keeping numbers as written so
// that free-form fields (an http connector's body template) round-trip.
func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}

// jsonErrorText is a decoding error without the input's text: a syntax
// error may quote a value.
func jsonErrorText(err error) string {
	var syntax *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("syntax error at byte %d", syntax.Offset)
	case errors.As(err, &typeErr):
		return fmt.Sprintf("a %s where %s is expected", typeErr.Value, article(typeErr.Type))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "unexpected end of input"
	}
	return "cannot decode"
}

func article(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Float64, reflect.Float32:
		return "a number"
	case reflect.Slice:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return article(t.Elem())
	}
	return "another type"
}

// unknownFields lists, as "path: unknown field", every object key of v
// that t has no JSON field for; keys are matched exactly, where
// encoding/json would also accept another case. Type mismatches are left to
// the typed decoding.
func unknownFields(v any, t reflect.Type, path string, out *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	join := func(key string) string {
		if path == "" {
			return key
		}
		return path + "." + key
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		fields := jsonFields(t)
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			f, ok := fields[k]
			if !ok {
				if len(*out) < maxResourceProblems {
					*out = append(*out, join(k)+": unknown field")
				}
				continue
			}
			unknownFields(obj[k], f, join(k), out)
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			unknownFields(obj[k], t.Elem(), join(k), out)
		}
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			return
		}
		for i, e := range arr {
			unknownFields(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), out)
		}
	}
}

// jsonFields maps the JSON names of t's fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// resourceKind is one kind as the API serves it.
type resourceKind struct {
	kind     string // gateway.KindVendor, …
	plural   string // path segment and list field: "vendors"
	singular string // in summaries: "vendor"
}

// ResourceMeta is what the store adds to a resource's spec in answers.
type ResourceMeta struct {
	Hash      string    `json:"hash" doc:"SHA-256 of the canonical JSON spec"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// Only in the answer to a PUT.
	Created *bool `json:"created,omitempty" doc:"true when the resource did not exist (201)"`
	Changed *bool `json:"changed,omitempty" doc:"false when the resource was already exactly so"`
}

func metaOf(r store.Resource, applied *AppliedResource) ResourceMeta {
	m := ResourceMeta{Hash: r.Hash, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
	if applied != nil {
		m.Created, m.Changed = &applied.Created, &applied.Changed
	}
	return m
}

// ResourcePath addresses one resource; exported so huma sees it when
// embedded.
type ResourcePath struct {
	Name string `path:"name" maxLength:"63" doc:"resource name"`
}

type putResourceInput struct {
	ResourcePath
	// Decoded by ApplyResource, which locates every problem at its field;
	// huma's own validation would stop at the first kind of problem.
	RawBody []byte
}

type resourceOutput[V any] struct {
	Status int
	Body   V
}

type listResourcesOutput[V any] struct {
	Body map[string][]V
}

// registerResource registers PUT, GET (one and all) and DELETE of a kind;
// view builds the answer of one stored resource.
func registerResource[V any](h *handlers, api huma.API, k resourceKind, view func(store.Resource, *AppliedResource) (V, error)) {
	base := "/api/v1/" + k.plural
	tags := []string{k.plural}

	huma.Register(api, huma.Operation{
		OperationID: "list-" + k.plural, Method: http.MethodGet, Path: base,
		Summary: "List " + k.plural, Tags: tags,
	}, func(ctx context.Context, _ *struct{}) (*listResourcesOutput[V], error) {
		stored, err := h.Store.ListResources(ctx, k.kind)
		if err != nil {
			return nil, h.apiError(err)
		}
		list := make([]V, 0, len(stored))
		for _, r := range stored {
			v, err := view(r, nil)
			if err != nil {
				return nil, h.apiError(err)
			}
			list = append(list, v)
		}
		return &listResourcesOutput[V]{Body: map[string][]V{k.plural: list}}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "get-" + k.singular, Method: http.MethodGet, Path: base + "/{name}",
		Summary: "Get a " + k.singular, Tags: tags,
	}, func(ctx context.Context, in *ResourcePath) (*resourceOutput[V], error) {
		r, err := h.Store.GetResource(ctx, k.kind, in.Name)
		if err != nil {
			return nil, h.apiError(err)
		}
		v, err := view(r, nil)
		if err != nil {
			return nil, h.apiError(err)
		}
		return &resourceOutput[V]{Status: http.StatusOK, Body: v}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "put-" + k.singular, Method: http.MethodPut, Path: base + "/{name}",
		Summary: "Create or replace a " + k.singular,
		Description: "The body is the " + k.singular + " without its name (taken from the path). The whole set of resources it makes is checked; " +
			"problems answer 422, each located at its field. A new " + k.singular + " answers 201, an existing one 200 (changed=false when it was already so).",
		Tags: tags, MaxBodyBytes: maxBodyBytes, DefaultStatus: http.StatusOK,
		RequestBody: &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{"application/json": {Schema: &huma.Schema{
			Type:        "object",
			Description: "The " + k.singular + "'s fields as in the answer of GET, without name, hash, createdAt and updatedAt; unknown fields are refused.",
		}}}},
	}, func(ctx context.Context, in *putResourceInput) (*resourceOutput[V], error) {
		applied, err := ApplyResource(ctx, h.Store, k.kind, in.Name, in.RawBody, time.Now().UTC())
		if err != nil {
			return nil, h.resourceError(k.kind, in.Name, err)
		}
		h.reloadGateway(ctx)
		v, err := view(applied.Resource, &applied)
		if err != nil {
			return nil, h.apiError(err)
		}
		status := http.StatusOK
		if applied.Created {
			status = http.StatusCreated
		}
		return &resourceOutput[V]{Status: status, Body: v}, nil
	})
	// RawBody made huma list a binary body as well; the body is JSON only.
	if item := api.OpenAPI().Paths[base+"/{name}"]; item != nil && item.Put != nil {
		delete(item.Put.RequestBody.Content, "application/octet-stream")
	}

	huma.Register(api, huma.Operation{
		OperationID: "delete-" + k.singular, Method: http.MethodDelete, Path: base + "/{name}",
		Summary: "Delete a " + k.singular, Description: "Refused (409) while another resource refers to it.",
		Tags: tags, DefaultStatus: http.StatusNoContent,
	}, func(ctx context.Context, in *ResourcePath) (*struct{}, error) {
		if err := DeleteResource(ctx, h.Store, k.kind, in.Name); err != nil {
			return nil, h.apiError(err)
		}
		h.reloadGateway(ctx)
		return nil, nil
	})
}

// reloadGateway makes the gateway see a committed change. A failure is
// logged, not answered: the change is stored and valid, and the gateway
// rebuilds its catalog from the store on its next reload anyway, so the
// writer has nothing to retry.
func (h *handlers) reloadGateway(ctx context.Context) {
	if h.Gateway == nil {
		return
	}
	if err := h.Gateway.Reload(ctx); err != nil {
		// The error may quote a resource's settings; only its kind is logged.
		h.Logger.Error("gateway reload failed after a resource change", "error_type", fmt.Sprintf("%T", err))
	}
}

// resourceError answers a refused apply: each problem of the resource
// itself at body.<field> (path.name for its name), problems of other
// resources at body with their kind and name.
func (h *handlers) resourceError(kind, name string, err error) error {
	var re *gateway.ResourceError
	if !errors.As(err, &re) {
		return h.apiError(err)
	}
	var details []error
	for _, p := range re.Problems {
		if len(details) == maxResourceProblems {
			break
		}
		if p.Kind != kind || p.Name != name {
			details = append(details, &huma.ErrorDetail{Location: "body", Message: p.Kind + " " + p.Name + ": " + p.Message})
			continue
		}
		field, msg := p.Field(), p.Message
		switch field {
		case "":
			details = append(details, &huma.ErrorDetail{Location: "body", Message: msg})
		case "body":
			details = append(details, &huma.ErrorDetail{Location: "body", Message: strings.TrimPrefix(msg, "body: ")})
		case "name":
			loc := "path.name"
			if strings.Contains(msg, "must equal the name in the path") {
				loc = "body.name"
			}
			details = append(details, &huma.ErrorDetail{Location: loc, Message: strings.TrimPrefix(msg, "name: ")})
		default:
			details = append(details, &huma.ErrorDetail{Location: "body." + field, Message: strings.TrimPrefix(msg, field+": ")})
		}
	}
	return huma.Error422UnprocessableEntity(fmt.Sprintf("the %s has %d problem(s)", strings.ToLower(kind), len(re.Problems)), details...)
}
