package store_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/store"
)

// The attack: idempotency keys were global, so another submitter's key
// answered with somebody else's job. A key is now scoped by its submitter:
// the same key from two submitters makes two jobs, and each submitter's
// repeat finds its own.
func TestIdempotencyKeysAreScopedBySubmitter(t *testing.T) {
	t.Parallel()
	f := setup(t)
	alice, bob, anonymous := newJob(1), newJob(1), newJob(1)
	alice.SubmittedBy, bob.SubmittedBy = "alice", "bob"
	for _, j := range []*jobs.Job{alice, bob, anonymous} {
		j.IdempotencyKey = "order-42"
	}
	out := f.create(t, alice, bob, anonymous)
	for i, c := range out {
		if c.Existing {
			t.Errorf("submitter %d: the key found another submitter's job %s", i, c.Job.ID)
		}
	}

	for _, who := range []*jobs.Job{alice, bob, anonymous} {
		again := newJob(1)
		again.SubmittedBy, again.IdempotencyKey = who.SubmittedBy, "order-42"
		c := f.create(t, again)[0]
		if !c.Existing || c.Job.ID != who.ID {
			t.Errorf("repeat by %q: %+v, want its own job %s", who.SubmittedBy, c, who.ID)
		}
	}

	// A submitter name with a colon could pose as another's scope
	// ("alice" with key "x:y" against "alice:x" with key "y"): refused.
	aliceXY := newJob(2)
	aliceXY.SubmittedBy, aliceXY.IdempotencyKey = "alice", "x:y"
	f.create(t, aliceXY)
	poser := newJob(2)
	poser.SubmittedBy, poser.IdempotencyKey = "alice:x", "y"
	res, err := f.st.Create(ctx(t), []*jobs.Job{poser})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err == nil || res[0].Job != nil {
		t.Errorf("a submitter name with a colon: %+v, want an error and no job", res[0])
	}
	if n, _ := f.rdb.Exists(ctx(t), f.ns.JobKey(poser.ID)).Result(); n != 0 {
		t.Error("a refused job was written")
	}
}

// The same key with another type or payload is a conflict, not the earlier
// job; the same type and payload, whitespace aside, is the earlier job.
func TestIdempotencyConflict(t *testing.T) {
	t.Parallel()
	f := setup(t)
	first := newJob(1)
	first.SubmittedBy, first.IdempotencyKey = "alice", "k"
	first.Payload = json.RawMessage(`{"a": 1, "b": [1, 2]}`)
	f.create(t, first)

	otherType := newJob(1)
	otherType.Type, otherType.Payload = "store.other", first.Payload
	otherPayload := newJob(1)
	otherPayload.Payload = json.RawMessage(`{"a":2,"b":[1,2]}`)
	reordered := newJob(1)
	reordered.Payload = json.RawMessage(`{"b":[1,2],"a":1}`)
	spaced := newJob(1)
	spaced.Payload = json.RawMessage("{\n  \"a\":1,\"b\":[ 1,2 ]\n}")
	all := []*jobs.Job{otherType, otherPayload, reordered, spaced}
	for _, j := range all {
		j.SubmittedBy, j.IdempotencyKey = "alice", "k"
	}
	out, err := f.st.Create(ctx(t), all)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"another type", "another payload", "members in another order"} {
		if c := out[i]; !errors.Is(c.Err, store.ErrIdempotencyConflict) || c.Job != nil || c.Existing {
			t.Errorf("%s: %+v, want ErrIdempotencyConflict and no job", name, c)
		}
	}
	if c := out[3]; c.Err != nil || !c.Existing || c.Job.ID != first.ID {
		t.Errorf("the same payload, spaced otherwise: %+v, want the earlier job %s", c, first.ID)
	}
	for _, j := range all {
		if n, _ := f.rdb.Exists(ctx(t), f.ns.JobKey(j.ID)).Result(); n != 0 {
			t.Errorf("job %s was written beside the earlier one", j.ID)
		}
	}
	if id, _ := f.rdb.Get(ctx(t), f.ns.IdempotencyKey("alice", "k")).Result(); id != first.ID {
		t.Errorf("the key names %q after the conflicts, want still %s", id, first.ID)
	}

	// In one batch: the first entry takes the key, a second entry like it
	// names it, one with another payload conflicts.
	a, same, differs := newJob(5), newJob(5), newJob(6)
	for _, j := range []*jobs.Job{a, same, differs} {
		j.SubmittedBy, j.IdempotencyKey = "alice", "batch"
	}
	out, err = f.st.Create(ctx(t), []*jobs.Job{a, same, differs})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Err != nil || out[0].Existing || out[1].Err != nil || !out[1].Existing || out[1].Job.ID != a.ID ||
		!errors.Is(out[2].Err, store.ErrIdempotencyConflict) {
		t.Errorf("one key thrice in a batch: %+v; want created, the same job, a conflict", out)
	}
}
