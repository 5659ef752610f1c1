package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/apikey"
)

// keysNewOptions are the inputs of `warren keys new`.
type keysNewOptions struct {
	name   string
	scopes []string
	types  []string
}

// Validate checks the options and returns the key they describe, without
// its hash.
func (o keysNewOptions) Validate() (apikey.Key, error) {
	k := apikey.Key{Name: o.name, SHA256: strings.Repeat("0", 64), Types: o.types}
	for _, s := range o.scopes {
		k.Scopes = append(k.Scopes, apikey.Scope(strings.TrimSpace(s)))
	}
	if err := k.Validate(); err != nil {
		return apikey.Key{}, err
	}
	return k, nil
}

func (a *app) keysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Make API keys",
		Long: `API keys let callers use the API: each has a name, scopes (submit: POST jobs;
read: GET jobs, artifacts, queues and metrics; admin: everything, cancel and
dead letters included) and may be limited to job types. The API stores only
their SHA-256, in api.keys of warren.yaml or WARREN_API_KEYS.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.keysNewCmd())
	return cmd
}

func (a *app) keysNewCmd() *cobra.Command {
	var o keysNewOptions
	cmd := &cobra.Command{
		Use:   "new NAME",
		Short: "Make a new random API key and print it once, with the entry that configures it",
		Long: `Make a new random API key (256 bits) and print it, once: warren keeps only
its SHA-256. Give the key to its user, and add the entry printed to the API's
configuration: to api.keys in warren.yaml, or to WARREN_API_KEYS (entries
separated by commas) or the file WARREN_API_KEYS_FILE names (one a line).
Restart the API to take it.`,
		Example: `  warren keys new ci --scopes submit,read
  warren keys new billing --scopes submit --types 'webhook.*'
  warren keys new ops --scopes admin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			k, err := o.Validate()
			if err != nil {
				return err
			}
			secret, sum, err := apikey.Generate()
			if err != nil {
				return err
			}
			k.SHA256 = sum
			scopes := make([]string, len(k.Scopes))
			for i, s := range k.Scopes {
				scopes[i] = string(s)
			}
			fmt.Fprintf(a.out, "key (shown once; give it to its user, who sends it as Authorization: Bearer KEY):\n\n  %s\n\n", secret)
			fmt.Fprintf(a.out, "entry for WARREN_API_KEYS or WARREN_API_KEYS_FILE:\n\n  %s\n\n", k.Entry())
			fmt.Fprintf(a.out, "or in warren.yaml:\n\n  api:\n    keys:\n      - name: %s\n        sha256: %s\n        scopes: [%s]\n",
				k.Name, k.SHA256, strings.Join(scopes, ", "))
			if len(k.Types) > 0 {
				quoted := make([]string, len(k.Types))
				for i, t := range k.Types {
					quoted[i] = fmt.Sprintf("%q", t)
				}
				fmt.Fprintf(a.out, "        types: [%s]\n", strings.Join(quoted, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&o.scopes, "scopes", nil, "what the key may do: submit, read, admin (comma-separated; required)")
	cmd.Flags().StringSliceVar(&o.types, "types", nil, "job types the key is limited to: names, family.* or * (comma-separated; default every type)")
	_ = cmd.MarkFlagRequired("scopes")
	return cmd
}
