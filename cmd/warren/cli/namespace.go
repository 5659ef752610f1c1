package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/config"
	"github.com/warrenhq/warren/internal/redact"
	"github.com/warrenhq/warren/jobs"
	"github.com/warrenhq/warren/queue"
)

func (a *app) namespaceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "namespace",
		Short: "Delete a namespace: every queue, exchange and Redis key of it",
		Long: `A namespace prefixes every queue, exchange and Redis key of one warren stack
(setting namespace, WARREN_NAMESPACE; default warren), so that several share
one RabbitMQ and one Redis. These commands talk to RabbitMQ and Redis
directly, not to the API.`,
		// Runnable, so that an unknown subcommand is an error, not help.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.namespaceDeleteCmd())
	return cmd
}

// namespaceDeleteOptions are the inputs of `warren namespace delete`.
type namespaceDeleteOptions struct {
	Namespace jobs.Namespace
	// Yes deletes; without it the command only says what it would delete.
	Yes bool
	// Force deletes while workers of the namespace are alive.
	Force bool
}

// Validate reports what is wrong with the options, if anything.
func (o *namespaceDeleteOptions) Validate() error { return o.Namespace.Validate() }

// namespaceOutput is what `warren namespace delete -o json` prints.
type namespaceOutput struct {
	Namespace jobs.Namespace `json:"namespace"`
	Queues    []string       `json:"queues"`
	Exchanges []string       `json:"exchanges"`
	// Listed says the management API listed the queues and exchanges;
	// false means they were looked for by the names warren derives.
	Listed    bool     `json:"listed"`
	RedisKeys int      `json:"redis_keys"`
	Pools     []string `json:"pools"`
	Workers   []string `json:"live_workers"`
	Deleted   bool     `json:"deleted"`
}

func (a *app) namespaceDeleteCmd() *cobra.Command {
	var o namespaceDeleteOptions
	cmd := &cobra.Command{
		Use:   "delete NAMESPACE --yes",
		Short: "Delete every queue, exchange and Redis key of a namespace",
		Long: `Delete everything warren keeps for NAMESPACE: its queues (the pools' queues
with the jobs waiting in them, their dead letters and intake queues, the delay
levels with the jobs scheduled in them, and what older versions left), its
exchanges, and its Redis keys (job records, the type registry, indexes,
leases, pauses, replica counts). What is deleted is gone: run it without
--yes first, which lists what it would delete and deletes nothing.

RabbitMQ's management API (management_url; by default on the AMQP host)
lists every queue and exchange whose name starts with NAMESPACE and a dot.
With management_url off, or when the management API does not answer, the
command looks for the names warren derives for the pools Redis names, and
finds nothing of a pool Redis has forgotten.

It refuses while worker processes of the namespace are alive (their leases
in Redis are current): a live worker declares its queues again when they
vanish. Stop them first, or add --force. An API of the namespace declares
its exchange and delay levels again when it reconnects; stop it too.

Without --yes, or when it refuses, it exits with status 1.`,
		Example: `  warren namespace delete t-demo
  warren namespace delete t-demo --yes`,
		Args: exactArgs(1, "a namespace, such as: warren namespace delete t-demo --yes"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Namespace = jobs.Namespace(args[0])
			format, err := a.format()
			if err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			cfg, err := a.config(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			return a.deleteNamespace(ctx, cfg, o, format)
		},
	}
	cmd.Flags().BoolVar(&o.Yes, "yes", false, "delete; without it, only say what would be deleted")
	cmd.Flags().BoolVar(&o.Force, "force", false, "delete even while worker processes of the namespace are alive")
	return cmd
}

// deleteNamespace finds what the namespace holds, says so, and deletes it
// when o allows.
func (a *app) deleteNamespace(ctx context.Context, cfg config.Config, o namespaceDeleteOptions, format string) error {
	log := a.logger(cfg)
	amqpTLS, err := cfg.AMQPTLSConfig()
	if err != nil {
		return err
	}
	mgmt, err := queue.NewManagementTLS(cfg.ManagementURL, cfg.AMQPURL, amqpTLS)
	if err != nil {
		return fmt.Errorf("management_url: %w", err)
	}
	sw, err := queue.NewSweeper(queue.Config{URL: cfg.AMQPURL, TLS: amqpTLS, Namespace: o.Namespace, Logger: log, Name: "warren-namespace-delete"}, mgmt)
	if err != nil {
		return fmt.Errorf("RabbitMQ: %w", err)
	}
	defer sw.Close()
	st, err := openStore(ctx, cfg, o.Namespace, log)
	if err != nil {
		return err
	}
	defer st.Close()

	inv, err := st.Inventory(ctx)
	if err != nil {
		return fmt.Errorf("Redis at %s: %w", redact.URL(cfg.RedisURL), err)
	}
	objs, err := sw.Find(ctx, inv.Pools)
	if err != nil {
		return fmt.Errorf("RabbitMQ at %s: %w", redact.URLs(cfg.AMQPURL), err)
	}
	out := namespaceOutput{
		Namespace: o.Namespace, Queues: orEmpty(objs.Queues), Exchanges: orEmpty(objs.Exchanges), Listed: objs.Listed,
		RedisKeys: inv.Keys, Pools: orEmpty(inv.Pools), Workers: []string{},
	}
	for _, w := range inv.Workers {
		out.Workers = append(out.Workers, w.ID)
	}
	empty := objs.Empty() && inv.Keys == 0

	var refusal error
	switch {
	case empty:
	case !o.Yes:
		refusal = fmt.Errorf("nothing deleted: namespace %s is deleted only with --yes", o.Namespace)
	case len(inv.Workers) > 0 && !o.Force:
		refusal = fmt.Errorf("nothing deleted: %d worker processes of namespace %s are alive (%s); stop them first, as they would declare their queues again, or add --force",
			len(inv.Workers), o.Namespace, strings.Join(out.Workers, ", "))
	default:
		if err := sw.Delete(ctx, objs); err != nil {
			return fmt.Errorf("RabbitMQ: %w", err)
		}
		if err := st.DeleteNamespace(ctx); err != nil {
			return fmt.Errorf("Redis: %w (the queues and exchanges are deleted; run the command again)", err)
		}
		out.Deleted = true
	}
	if isData(format) {
		if err := writeData(a.out, format, out); err != nil {
			return err
		}
	} else if err := writeNamespacePlan(a.out, out, empty); err != nil {
		return err
	}
	return refusal
}

// writeNamespacePlan says what the namespace held and whether it was
// deleted.
func writeNamespacePlan(w io.Writer, o namespaceOutput, empty bool) error {
	if empty {
		_, err := fmt.Fprintf(w, "namespace %s holds nothing: no queue, exchange or Redis key\n", o.Namespace)
		return err
	}
	verb := "would delete"
	if o.Deleted {
		verb = "deleted"
	}
	how := "listed by RabbitMQ's management API"
	if !o.Listed {
		how = "found by the names warren derives for the pools Redis names"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "namespace %s: %s %d queues and %d exchanges (%s) and %d Redis keys\n",
		o.Namespace, verb, len(o.Queues), len(o.Exchanges), how, o.RedisKeys)
	if len(o.Pools) > 0 {
		fmt.Fprintf(&b, "pools: %s\n", strings.Join(o.Pools, ", "))
	}
	if len(o.Workers) > 0 {
		fmt.Fprintf(&b, "live workers: %s\n", strings.Join(o.Workers, ", "))
	}
	for _, l := range []struct {
		name  string
		names []string
	}{{"queues", o.Queues}, {"exchanges", o.Exchanges}} {
		if len(l.names) == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s:\n", l.name)
		for _, n := range l.names {
			fmt.Fprintf(&b, "  %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// orEmpty is ss, or an empty list for nil, which JSON writes as [] rather
// than null.
func orEmpty(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}
