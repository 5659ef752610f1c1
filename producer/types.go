package producer

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/schema"
	"github.com/warrenhq/warren/store"
)

// typeTTL bounds how long a cached declaration is trusted without being
// told of changes (Forget): a producer nobody tells still sees a changed
// schema within it.
const typeTTL = 10 * time.Second

// typeEntry is a declared type with its compiled payload schema.
type typeEntry struct {
	t       jobs.Type
	schema  *schema.Schema // nil: any JSON object
	fetched time.Time
}

// types caches declarations from the store; a miss always asks the store.
type types struct {
	st  TypeStore
	now func() time.Time

	mu      sync.RWMutex
	entries map[string]*typeEntry
	gen     uint64
}

// forget drops one type, or every type when name is "".
func (c *types) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if name == "" {
		clear(c.entries)
		return
	}
	delete(c.entries, name)
}

// get returns the declaration of a type, or an unknown_type Error.
func (c *types) get(ctx context.Context, name string) (*typeEntry, error) {
	c.mu.RLock()
	e, gen := c.entries[name], c.gen
	c.mu.RUnlock()
	if e != nil && c.now().Sub(e.fetched) < typeTTL {
		return e, nil
	}
	t, err := c.st.Type(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, c.unknown(ctx, name)
	}
	if err != nil {
		return nil, err
	}
	e = &typeEntry{t: t.WithDefaults(), fetched: c.now()}
	if len(t.Schema) > 0 {
		if e.schema, err = schema.Compile(t.Name, t.Schema); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	if c.gen == gen { // no Forget raced with the load
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
	return refuse("unknown_type", "type", "unknown job type %q; %s", name, known)
}

// validatePayload checks a payload against the type's schema and names the
// first field at fault.
func (e *typeEntry) validatePayload(payload []byte) error {
	if e.schema == nil {
		return nil
	}
	err := e.schema.Validate(payload)
	var fe *schema.FieldError
	if errors.As(err, &fe) {
		e := refuse("invalid_payload", fe.Field, "%s", fe.Message)
		e.Unknown = fe.Unknown
		return e
	}
	return err
}
