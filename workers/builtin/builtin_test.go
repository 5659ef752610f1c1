package builtin_test

import (
	"slices"
	"testing"

	"github.com/warrenhq/warren/config"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/workers/builtin"
)

// registry records what a service declares.
type registry struct{ types []jobs.Type }

func (r *registry) Handle(t jobs.Type, _ jobs.Handler) error {
	r.types = append(r.types, t)
	return nil
}

func TestEachServiceDeclaresTypesOfItsPool(t *testing.T) {
	if !slices.IsSorted(builtin.Pools()) {
		t.Errorf("pools %v: want them sorted", builtin.Pools())
	}
	for _, s := range builtin.Services {
		var r registry
		if err := s.Register(&r, config.Default(), nil); err != nil {
			t.Fatalf("%s: %v", s.Pool, err)
		}
		if len(r.types) == 0 || s.Concurrency < 1 || s.CPU == "" || s.Memory == "" {
			t.Errorf("%s: %d types, concurrency %d, requests %q %q", s.Pool, len(r.types), s.Concurrency, s.CPU, s.Memory)
		}
		for _, typ := range r.types {
			if typ.Pool != s.Pool {
				t.Errorf("service %s declares %s in pool %s", s.Pool, typ.Name, typ.Pool)
			}
		}
		if got, ok := builtin.Lookup(s.Pool); !ok || got.Pool != s.Pool {
			t.Errorf("Lookup(%s) = %v, %v", s.Pool, got.Pool, ok)
		}
	}
	if _, ok := builtin.Lookup("nope"); ok {
		t.Error("Lookup found a pool that is not built in")
	}
}
