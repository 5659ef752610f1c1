package cli

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenhq/warren/config"
)

// A supervisor given no pools runs the built-in ones and every configured
// pool with a command, but the sys pool (sys.spin burns a CPU for whoever
// submits it) only where asked for: warren dev, or pools.sys.enabled.
func TestDefaultPools(t *testing.T) {
	t.Parallel()
	yes, no := true, false
	for _, tt := range []struct {
		name    string
		pools   map[string]config.Pool
		withSys bool
		want    []string
	}{
		{name: "autoscale", want: []string{"image", "webhook"}},
		{name: "dev", withSys: true, want: []string{"image", "sys", "webhook"}},
		{name: "sys enabled", pools: map[string]config.Pool{"sys": {Enabled: &yes}}, want: []string{"image", "sys", "webhook"}},
		{name: "image disabled, a pool with a command", pools: map[string]config.Pool{
			"image": {Enabled: &no}, "text": {Command: []string{"python3", "w.py"}}, "idle": {Command: []string{"x"}, Enabled: &no},
		}, want: []string{"text", "webhook"}},
	} {
		s := &stack{cfg: config.Config{Pools: tt.pools}}
		if d := cmp.Diff(tt.want, s.defaultPools(tt.withSys)); d != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, d)
		}
	}
}
