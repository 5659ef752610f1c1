package autoscale_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/autoscale"
)

// step is one decision: at seconds after the start, with this observation;
// the pool then runs the decided size, as the supervisor makes it.
type step struct {
	at         int // seconds
	backlog    int
	age        time.Duration
	undeclared bool
	paused     bool
}

func run(t *testing.T, p autoscale.Policy, start int, steps []step) []int {
	t.Helper()
	s, err := autoscale.NewScaler(p)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	current := start
	var sizes []int
	for _, st := range steps {
		d := s.Decide(t0.Add(time.Duration(st.at)*time.Second), current, autoscale.Observation{Backlog: st.backlog, OldestAge: st.age, Undeclared: st.undeclared, Paused: st.paused})
		if d.Reason == "" {
			t.Errorf("decision without a reason: %+v", d)
		}
		current = d.Desired
		sizes = append(sizes, current)
	}
	return sizes
}

// every returns steps every 5s with the given backlogs.
func every(backlogs ...int) []step {
	steps := make([]step, len(backlogs))
	for i, b := range backlogs {
		steps[i] = step{at: 5 * i, backlog: b}
	}
	return steps
}

func TestDecisions(t *testing.T) {
	t.Parallel()
	noDownWindow := autoscale.Policy{Min: 1, Max: 10, TargetBacklog: 10, ScaleDownWindow: -1}
	tests := []struct {
		name   string
		policy autoscale.Policy
		start  int
		steps  []step
		want   []int
	}{
		{
			name:   "a burst scales up at once, capped at max",
			policy: noDownWindow, start: 1,
			steps: every(95, 500, 500),
			want:  []int{10, 10, 10},
		},
		{
			name:   "within the 10% band nothing changes",
			policy: noDownWindow, start: 5,
			steps: every(52, 46, 56, 44),
			want:  []int{5, 5, 6, 5},
		},
		{
			name:   "scale-down waits for the 60s window",
			policy: autoscale.Policy{Min: 1, Max: 10, TargetBacklog: 10}, start: 1,
			steps: append(every(100), step{at: 5}, step{at: 30}, step{at: 59}, step{at: 60}, step{at: 65}),
			want:  []int{10, 10, 10, 10, 1, 1},
		},
		{
			name:   "oscillating load does not flap",
			policy: autoscale.Policy{Min: 1, Max: 10, TargetBacklog: 10}, start: 1,
			steps: every(100, 0, 100, 0, 100, 0, 100, 0),
			want:  []int{10, 10, 10, 10, 10, 10, 10, 10},
		},
		{
			name:   "a pool at zero stays there up to the activation backlog, then starts",
			policy: autoscale.Policy{Min: 0, Max: 5, TargetBacklog: 10, ActivationBacklog: 5}, start: 0,
			steps: every(0, 3, 5, 6, 40),
			want:  []int{0, 0, 0, 1, 4},
		},
		{
			name:   "scale to zero once idle for the window, and back",
			policy: autoscale.Policy{Min: 0, Max: 5, TargetBacklog: 10, ScaleDownWindow: 10 * time.Second}, start: 2,
			steps: every(20, 0, 0, 0, 0, 1),
			want:  []int{2, 2, 0, 0, 0, 1}, // the 2 recommended at 0s leaves the window at 10s
		},
		{
			name:   "max step bounds each decision",
			policy: autoscale.Policy{Min: 1, Max: 10, TargetBacklog: 10, MaxStep: 3, ScaleDownWindow: -1}, start: 1,
			steps: every(100, 100, 100, 100, 0, 0),
			want:  []int{4, 7, 10, 10, 7, 4},
		},
		{
			name:   "scale-up window delays growth until the load persists",
			policy: autoscale.Policy{Min: 1, Max: 10, TargetBacklog: 10, ScaleUpWindow: 10 * time.Second, ScaleDownWindow: -1}, start: 2,
			steps: every(20, 100, 100, 100),
			want:  []int{2, 2, 10, 10}, // the 2 recommended at 0s leaves the window at 10s
		},
		{
			name:   "the oldest job's age can ask for more than the backlog does",
			policy: autoscale.Policy{Min: 1, Max: 20, TargetBacklog: 10, TargetAge: 10 * time.Second, ScaleDownWindow: -1}, start: 2,
			steps: []step{{at: 0, backlog: 20, age: 5 * time.Second}, {at: 5, backlog: 20, age: 30 * time.Second}},
			want:  []int{2, 6},
		},
		{
			name:   "a job waiting too long wakes a pool at zero",
			policy: autoscale.Policy{Min: 0, Max: 3, TargetBacklog: 10, ActivationBacklog: 50, TargetAge: time.Minute}, start: 0,
			steps: []step{{at: 0, backlog: 2, age: 10 * time.Second}, {at: 5, backlog: 2, age: 2 * time.Minute}},
			want:  []int{0, 1},
		},
		{
			name:   "a pool at zero whose queue was never declared starts one worker to declare it, then idles",
			policy: autoscale.Policy{Min: 0, Max: 3, TargetBacklog: 10, ScaleDownWindow: 10 * time.Second}, start: 0,
			steps: []step{{at: 0, undeclared: true}, {at: 5}, {at: 10}, {at: 15}},
			want:  []int{1, 1, 0, 0},
		},
		{
			name:   "a paused pool does not grow for its backlog, nor wake from zero, and grows once resumed",
			policy: autoscale.Policy{Min: 0, Max: 10, TargetBacklog: 10, TargetAge: time.Second, ScaleDownWindow: -1}, start: 2,
			steps: []step{
				{at: 0, backlog: 500, age: time.Hour, paused: true}, {at: 5, backlog: 500, paused: true}, {at: 10, backlog: 500},
			},
			want: []int{2, 2, 10},
		},
		{
			name:   "a paused pool at zero stays there",
			policy: autoscale.Policy{Min: 0, Max: 10, TargetBacklog: 10}, start: 0,
			steps: []step{{at: 0, backlog: 500, paused: true}, {at: 5, backlog: 500, paused: true}},
			want:  []int{0, 0},
		},
		{
			name:   "an undeclared queue does not grow a running pool",
			policy: autoscale.Policy{Min: 2, Max: 3, TargetBacklog: 10}, start: 2,
			steps: []step{{at: 0, undeclared: true}},
			want:  []int{2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, run(t, tt.policy, tt.start, tt.steps)); d != "" {
				t.Errorf("sizes (-want +got):\n%s", d)
			}
		})
	}
}

func TestInvalidPolicies(t *testing.T) {
	t.Parallel()
	for _, p := range []autoscale.Policy{
		{Min: -1}, {Min: 3, Max: 2}, {TargetBacklog: -1}, {MaxStep: -1}, {TargetAge: -time.Second},
	} {
		if _, err := autoscale.NewScaler(p); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}

func TestWithDefaultsIsIdempotent(t *testing.T) {
	t.Parallel()
	for _, p := range []autoscale.Policy{{}, {Min: 2, ScaleDownWindow: -1}, {Max: 5, TargetBacklog: 3, Interval: time.Second}} {
		once := p.WithDefaults()
		if twice := once.WithDefaults(); twice != once {
			t.Errorf("WithDefaults(WithDefaults(%+v)) = %+v, want %+v", p, twice, once)
		}
	}
}
