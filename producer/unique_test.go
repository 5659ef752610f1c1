package producer_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/producer"
)

// Many submissions of one type and unique key at once make exactly one
// job: one message, one record, and every other submission answered with
// that job.
func TestUniqueConcurrentSubmissions(t *testing.T) {
	t.Parallel()
	env, p := declared(t)
	ctx := context.Background()
	const n = 40
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids = map[string]int{}
		new int
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := p.Submit(ctx, producer.Request{Type: "sys.echo", Payload: json.RawMessage(`{"n":1}`),
				Unique: &jobs.Unique{Key: "uniq-account-42", While: jobs.UniqueRunning}})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[res.Job.ID]++
			if !res.Existing {
				new++
			} else if !res.Unique {
				t.Errorf("a duplicate not marked unique: %+v", res)
			}
		}()
	}
	wg.Wait()
	if len(ids) != 1 || new != 1 {
		t.Errorf("%d submissions gave jobs %v, %d of them new; want one job", n, ids, new)
	}
	if got := env.Messages(t, "sys"); got != 1 {
		t.Errorf("%d messages published, want 1", got)
	}
	if keys := env.JobKeys(t); len(keys) != 1 {
		t.Errorf("%d records, want 1", len(keys))
	}
}

// on_conflict "error" refuses a duplicate, naming the holder; a job whose
// unique settings are out of bounds is refused before anything is written.
func TestUniqueOnConflictAndValidation(t *testing.T) {
	t.Parallel()
	env, p := declared(t)
	ctx := context.Background()
	first, err := p.Submit(ctx, producer.Request{Type: "sys.echo", Unique: &jobs.Unique{Key: "uniq-k"}})
	if err != nil {
		t.Fatal(err)
	}
	if u := first.Job.Unique; u == nil || u.While != jobs.UniqueUntilDone || u.For.Std() != jobs.DefaultUniqueFor {
		t.Errorf("defaults: %+v, want until_done for 24h", u)
	}
	_, err = p.Submit(ctx, producer.Request{Type: "sys.echo", Unique: &jobs.Unique{Key: "uniq-k", OnConflict: jobs.OnConflictError}})
	var conflict *producer.UniqueConflictError
	if !errors.As(err, &conflict) || !errors.Is(err, producer.ErrUniqueConflict) || conflict.Holder.ID != first.Job.ID {
		t.Errorf("on_conflict error: %v, want a conflict naming %s", err, first.Job.ID)
	}

	for _, c := range []struct {
		u           jobs.Unique
		code, field string
	}{
		{jobs.Unique{}, "missing_field", "unique.key"},
		{jobs.Unique{Key: string(make([]byte, 256))}, "invalid_field", "unique.key"},
		{jobs.Unique{Key: "a\x1b[31mred"}, "invalid_field", "unique.key"},
		{jobs.Unique{Key: "\xff"}, "invalid_encoding", "unique.key"},
		{jobs.Unique{Key: "k", While: "forever"}, "invalid_field", "unique.while"},
		{jobs.Unique{Key: "k", For: -1}, "invalid_field", "unique.for"},
		{jobs.Unique{Key: "k", For: jobs.Duration(31 * 24 * time.Hour)}, "invalid_field", "unique.for"},
		{jobs.Unique{Key: "k", While: jobs.UniqueAlways}, "missing_field", "unique.for"},
		{jobs.Unique{Key: "k", OnConflict: "ignore"}, "invalid_field", "unique.on_conflict"},
	} {
		u := c.u
		_, err := p.Submit(ctx, producer.Request{Type: "sys.echo", Unique: &u})
		var refused *producer.Error
		if !errors.As(err, &refused) || refused.Code != c.code || refused.Field != c.field {
			t.Errorf("unique %+v: %v, want %s naming %s", c.u, err, c.code, c.field)
		}
	}
	if got := env.Messages(t, "sys"); got != 1 {
		t.Errorf("%d messages published, want 1", got)
	}
}

// A batch whose two entries share a key is one job; when that job's
// publish fails, the entry answered with it fails too, rather than standing
// on a job that was discarded.
func TestUniqueBatchSharesTheFirstsFate(t *testing.T) {
	t.Parallel()
	env, p := declared(t)
	ctx := context.Background()
	req := producer.Request{Type: "sys.echo", Unique: &jobs.Unique{Key: "uniq-batch"}}
	res, err := p.SubmitMany(ctx, []producer.Request{req, req})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Existing || !res[1].Existing || res[1].Job.ID != res[0].Job.ID {
		t.Errorf("one batch: %+v, %+v; want one job", res[0], res[1])
	}

	// A type no queue is bound for: the first is refused and discarded,
	// and so is the second that named it.
	if err := env.Store.DeclareTypes(ctx, []jobs.Type{{Name: "uniq.unbound", Pool: "uniqnone"}}); err != nil {
		t.Fatal(err)
	}
	ghost := producer.Request{Type: "uniq.unbound", Unique: &jobs.Unique{Key: "uniq-ghost"}}
	res, err = p.SubmitMany(ctx, []producer.Request{ghost, ghost})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if !errors.Is(r.Err, producer.ErrNoRoute) || r.Job != nil {
			t.Errorf("entry %d: %+v, want ErrNoRoute", i, r)
		}
	}
	if len(env.JobKeys(t)) != 1 {
		t.Errorf("records %v, want only the first batch's job", env.JobKeys(t))
	}
}
