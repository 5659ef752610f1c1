package api

import (
	"encoding/json"
	"math/big"
	"strings"
	"testing"
)

func TestWholeNumber(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		n    int
		want bool
	}{
		{"3", 3, true}, {"3.0", 3, true}, {"3.000", 3, true}, {"30e-1", 3, true}, {"0.3e1", 3, true}, {"3E0", 3, true},
		{"3e+0", 3, true}, {"-2", -2, true}, {"0", 0, true}, {"-0.0", 0, true}, {"0e-999999999999", 0, true}, {"100", 100, true},
		{"3.5", 0, false}, {"3.0000000000000001", 0, false}, {"31e-1", 0, false}, {"1e-400", 0, false},
		{"1e400", 0, false}, {"1e999999999999999999999", 0, false}, {"2147483648", 0, false}, {"1e10", 0, false},
		{`"3"`, 0, false}, {"null", 0, false}, {"true", 0, false}, {"[3]", 0, false}, {"", 0, false},
	} {
		n, ok := wholeNumber([]byte(tc.in))
		if ok != tc.want || n != tc.n {
			t.Errorf("wholeNumber(%s) = %d, %v; want %d, %v", tc.in, n, ok, tc.n, tc.want)
		}
	}
}

// wholeNumber agrees with exact arithmetic on every JSON number it is
// given, and never takes what is not one.
func FuzzWholeNumber(f *testing.F) {
	for _, s := range []string{"3", "3.0", "30e-1", "3.5", "3.0000000000000001", "-0", "1e400", "0e-99999999999", `"3"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := wholeNumber([]byte(s))
		var v any
		isNumber := json.Unmarshal([]byte(s), &v) == nil && strings.TrimSpace(s) != "" && v != nil
		if _, num := v.(float64); !num {
			isNumber = false
		}
		if !isNumber {
			if ok {
				t.Fatalf("wholeNumber(%q) = %d, took what is not a JSON number", s, n)
			}
			return
		}
		if len(s) > 40 || strings.ContainsAny(s, "eE") {
			// Exponents are where big.Rat would expand the number: only
			// check what the verdict says.
			if ok && v.(float64) != float64(n) {
				t.Fatalf("wholeNumber(%q) = %d, not the number", s, n)
			}
			return
		}
		r, good := new(big.Rat).SetString(strings.TrimSpace(s))
		if !good {
			t.Fatalf("big.Rat cannot read %q", s)
		}
		want := r.IsInt() && r.Num().IsInt64() && r.Num().Int64() >= -1<<31+1 && r.Num().Int64() <= 1<<31-1
		if ok != want || ok && int64(n) != r.Num().Int64() {
			t.Fatalf("wholeNumber(%q) = %d, %v; exactly it is %s", s, n, ok, r.RatString())
		}
	})
}
