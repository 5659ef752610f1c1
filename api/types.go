package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// typeEntry is a declared type with its compiled payload schema.
type typeEntry struct {
	t      jobs.Type
	schema *jsonschema.Schema // nil: any JSON object
}

// types caches declarations from the store. Workers announce declarations
// on the events channel and the Notifier calls invalidate, so a new or
// changed type is seen without a restart; a miss always asks the store.
type types struct {
	st Store

	mu      sync.RWMutex
	entries map[string]*typeEntry
	gen     uint64
}

func newTypes(st Store) *types { return &types{st: st, entries: map[string]*typeEntry{}} }

// invalidate forgets one type, or every type when name is "".
func (c *types) invalidate(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if name == "" {
		clear(c.entries)
		return
	}
	delete(c.entries, name)
}

// get returns the declaration of a type, or an unknown_type API error.
func (c *types) get(ctx context.Context, name string) (*typeEntry, error) {
	c.mu.RLock()
	e, gen := c.entries[name], c.gen
	c.mu.RUnlock()
	if e != nil {
		return e, nil
	}
	t, err := c.st.Type(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, c.unknown(ctx, name)
	}
	if err != nil {
		return nil, err
	}
	e = &typeEntry{t: t.WithDefaults()}
	if len(t.Schema) > 0 {
		if e.schema, err = compileSchema(t); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	if c.gen == gen { // no invalidation raced with the load
		c.entries[name] = e
	}
	c.mu.Unlock()
	return e, nil
}

// unknown builds the error for an undeclared type, listing the known ones.
func (c *types) unknown(ctx context.Context, name string) error {
	all, err := c.st.Types(ctx)
	if err != nil {
		return err
	}
	names := make([]string, len(all))
	for i, t := range all {
		names[i] = t.Name
	}
	known := "none are declared yet: start a worker that handles it"
	if len(names) > 0 {
		known = "known types: " + strings.Join(names, ", ")
	}
	return apiErr("unknown_type", "type", "unknown job type %q; %s", name, known)
}

func compileSchema(t jobs.Type) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(t.Schema))
	if err != nil {
		return nil, fmt.Errorf("schema of type %s: %w", t.Name, err)
	}
	c := jsonschema.NewCompiler()
	// Declarations come from workers; never let one make the API fetch
	// URLs or read files.
	c.UseLoader(jsonschema.SchemeURLLoader{})
	url := "warren:///types/" + t.Name + ".json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("schema of type %s: %w", t.Name, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("schema of type %s: %w", t.Name, err)
	}
	return s, nil
}

var printer = message.NewPrinter(language.English)

// validatePayload checks a payload against the type's schema and names the
// first field at fault.
func (e *typeEntry) validatePayload(payload []byte) error {
	if e.schema == nil {
		return nil
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return apiErr("invalid_json", "payload", "payload: %v", err)
	}
	err = e.schema.Validate(inst)
	var ve *jsonschema.ValidationError
	if err == nil || !errors.As(err, &ve) {
		return err
	}
	leaf := ve
	for len(leaf.Causes) > 0 {
		leaf = leaf.Causes[0]
	}
	path := append([]string{"payload"}, leaf.InstanceLocation...)
	switch k := leaf.ErrorKind.(type) {
	case *kind.Required:
		if len(k.Missing) == 1 {
			path = append(path, k.Missing[0])
		}
	case *kind.AdditionalProperties:
		if len(k.Properties) == 1 {
			path = append(path, k.Properties[0])
		}
	}
	field := strings.Join(path, ".")
	return apiErr("invalid_payload", field, "%s: %s", field, leaf.ErrorKind.LocalizedString(printer))
}
