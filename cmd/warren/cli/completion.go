package cli

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Shell completion. Cobra serves `warren completion bash|zsh|fish|powershell`
// (the scripts) and the hidden `warren __complete ARGS…` the scripts call;
// what follows fills in the values that only the API knows (pools, job
// types) and those of -o.
//
// Completion runs while someone types, so it asks the API once, briefly,
// and says nothing when the API cannot answer: no error, no message, just
// no suggestions (and no file names, which would never be right).

// completionTimeout bounds the API call of one completion.
const completionTimeout = 2 * time.Second

// completionFunc is the signature cobra calls for an argument's or a
// flag's values.
type completionFunc = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective)

// completePools completes a command's first argument with the pools the API
// knows (GET /v1/queues).
func (a *app) completePools(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.completePoolValues(cmd, args, toComplete)
}

// completePoolValues completes a value with the pools the API knows, for a
// flag such as --pool.
func (a *app) completePoolValues(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return a.completeFromAPI(cmd, toComplete, func(ctx context.Context, a *app) ([]string, error) {
		c, err := a.apiClient(cmd)
		if err != nil {
			return nil, err
		}
		qs, err := c.Queues(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]string, 0, len(qs))
		for _, q := range qs {
			out = append(out, q.Pool)
		}
		return out, nil
	})
}

// completeTypes completes a command's first argument with the job types
// the API accepts from this key (GET /v1/types), each with its pool.
func (a *app) completeTypes(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.completeTypeValues(cmd, args, toComplete)
}

// completeTypeValues completes a value with the job types the API accepts
// from this key, for a flag such as --type.
func (a *app) completeTypeValues(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return a.completeFromAPI(cmd, toComplete, func(ctx context.Context, a *app) ([]string, error) {
		c, err := a.apiClient(cmd)
		if err != nil {
			return nil, err
		}
		ts, err := c.Types(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]string, 0, len(ts))
		for _, t := range ts {
			out = append(out, t.Name+"\tpool "+t.Pool)
		}
		return out, nil
	})
}

// completeFromAPI runs list within completionTimeout and returns the values
// that start with toComplete; nothing at all if list fails.
func (a *app) completeFromAPI(cmd *cobra.Command, toComplete string, list func(context.Context, *app) ([]string, error)) ([]string, cobra.ShellCompDirective) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	values, err := list(ctx, a)
	if err != nil {
		cobra.CompDebugln("warren: completion: "+err.Error(), false)
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return withPrefix(values, toComplete), cobra.ShellCompDirectiveNoFileComp
}

// completeOutput completes -o with the formats and what each prints.
func completeOutput(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	values := make([]string, len(outputFormats))
	for i, f := range outputFormats {
		values[i] = f[0] + "\t" + f[1]
	}
	return withPrefix(values, toComplete), cobra.ShellCompDirectiveNoFileComp
}

// withPrefix keeps the values (each "value" or "value\tdescription") that
// start with prefix.
func withPrefix(values []string, prefix string) []string {
	out := values[:0:0]
	for _, v := range values {
		if strings.HasPrefix(v, prefix) {
			out = append(out, v)
		}
	}
	return out
}
