package cli

import (
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/warrenhq/warren/config"
	"github.com/warrenhq/warren/deploy"
)

// Defaults of `warren deploy render`: the warren.yaml that deploy/k8s puts in
// its ConfigMap, and the directory its kustomization includes.
const (
	defaultDeployConfig = "deploy/k8s/warren.yaml"
	defaultDeployDir    = "deploy/k8s/pools"
)

func (a *app) deployCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Write the Kubernetes manifests of the worker pools from warren.yaml",
		Long: `Tools for running warren on Kubernetes; deploy/README.md describes the whole
deployment.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.deployRenderCmd())
	return cmd
}

// deployRenderOptions are the inputs of `warren deploy render`.
type deployRenderOptions struct {
	Dir           string
	Check         bool
	Image         string
	PrometheusURL string
	VHost         string
}

// Validate reports what is wrong with the options, if anything.
func (o *deployRenderOptions) Validate() error {
	if strings.TrimSpace(o.Dir) == "" {
		return errors.New("--dir must name a directory")
	}
	if o.Image != "" && strings.ContainsAny(o.Image, " \t\n") {
		return fmt.Errorf("--image %q: want an image reference such as registry.example.com/warren:v1", o.Image)
	}
	return nil
}

func (a *app) deployRenderCmd() *cobra.Command {
	var o deployRenderOptions
	cmd := &cobra.Command{
		Use:   "render",
		Short: "Write a Deployment and a KEDA ScaledObject per worker pool from warren.yaml",
		Long: `Write, into --dir, one file per worker pool (the built-in pools and every pool
in warren.yaml) holding the pool's Deployment and its KEDA ScaledObject, and a
kustomization.yaml listing them. The ScaledObjects carry each pool's autoscale
policy (pools.NAME.autoscale), so KEDA sizes the pools as 'warren autoscale'
does on one machine. Files that are already current are left alone, and
generated files of pools no longer in warren.yaml are removed.

The config is --config, else WARREN_CONFIG, else ` + defaultDeployConfig + `, the
file deploy/k8s puts in its ConfigMap. Only the file is read: the pods get
warren.yaml from that ConfigMap, so other WARREN_* variables and flags of
this shell must not change the output.

--check writes nothing; it lists the files that differ from what would be
written and exits 1 if there are any, for CI.`,
		Example: `  warren deploy render
  warren deploy render --check
  warren deploy render --config prod/warren.yaml --dir prod/pools --image registry.example.com/warren:v1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			path := cmp.Or(a.configPath, getenv(a.environ, "WARREN_CONFIG"), defaultDeployConfig)
			cfg, err := config.Load(path, nil)
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			files, err := deploy.Render(cfg, deploy.Options{Image: o.Image, PrometheusURL: o.PrometheusURL, VHost: o.VHost})
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if o.Check {
				changes, err := deploy.Diff(o.Dir, files)
				if err != nil {
					return err
				}
				for _, c := range changes {
					fmt.Fprintf(a.out, "%s: %s\n", filepath.Join(o.Dir, c.File), c.What)
				}
				if len(changes) > 0 {
					fmt.Fprintf(a.errOut, "warren: %d generated file(s) in %s do not match %s; run 'warren deploy render' and commit the result\n", len(changes), o.Dir, path)
					return &exitError{code: 1}
				}
				fmt.Fprintf(a.out, "%s is up to date with %s\n", o.Dir, path)
				return nil
			}
			changes, err := deploy.Write(o.Dir, files)
			if err != nil {
				return err
			}
			for _, c := range changes {
				verb := "wrote"
				if c.What == "stale" {
					verb = "removed"
				}
				fmt.Fprintf(a.out, "%s %s\n", verb, filepath.Join(o.Dir, c.File))
			}
			if len(changes) == 0 {
				fmt.Fprintf(a.out, "%s is up to date with %s\n", o.Dir, path)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", defaultDeployDir, "directory to write the generated files into")
	f.BoolVar(&o.Check, "check", false, "write nothing; list the files that differ and exit 1 if any do")
	f.StringVar(&o.Image, "image", "", "warren's container image, for pools without an image of their own (default "+deploy.DefaultImage+")")
	f.StringVar(&o.PrometheusURL, "prometheus-url", "", "Prometheus server of the age triggers of pools with a target_age (default "+deploy.DefaultPrometheusURL+")")
	f.StringVar(&o.VHost, "vhost", "", "RabbitMQ vhost of warren's queues, for KEDA's rabbitmq trigger (default /)")
	return cmd
}

// getenv returns the value of key in environ, or "".
func getenv(environ []string, key string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}
