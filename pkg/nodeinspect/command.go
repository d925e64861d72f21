package nodeinspect

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/meshcni/mesh-cni/pkg/explain"
)

// Exit codes of the plug-in itself; inspect's own (0-5) are passed through.
const (
	ExitUnknown = 2  // the pod does not exist or is not scheduled: unknown on any node
	ExitFailed  = 5  // the inspector could not be run
	ExitUsage   = 64 // bad command line
)

const usage = `usage:
  kubectl mesh-cni inspect POD [-n NAMESPACE] [-o text|json]
  kubectl mesh-cni inspect --node NODE --all [-o text|json]
  kubectl mesh-cni explain -f FILE|- [--config FILE] [-n NAMESPACE] [-o text|json]
flags for inspect: --kubeconfig, --context, --image (default: the mesh-cni DaemonSet's),
  --inspector-namespace (default mesh-cni-system), --timeout (default 2m)
exit codes: 0 OK, 1 DRIFT, 2 unknown pod, 3 not redirected, 4 UNMESHED, 5 could not inspect`

// NewKubectl makes the kubectl runner for the operator's flags.
type NewKubectl func(kubeconfig, context string) Kubectl

// Command is kubectl-mesh_cni: `kubectl mesh-cni inspect|explain ...`.
func Command(args []string, stdin io.Reader, stdout, stderr io.Writer, newKubectl NewKubectl) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return ExitUsage
	}
	switch args[0] {
	case "explain":
		// Offline: no cluster, no node. kubectl's connection flags mean nothing here.
		return explain.Command(dropConnFlags(args[1:]), stdin, stdout, stderr)
	case "inspect":
		return inspectCmd(args[1:], stdout, stderr, newKubectl)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "unknown command %q\n%s\n", args[0], usage)
	return ExitUsage
}

func inspectCmd(args []string, stdout, stderr io.Writer, newKubectl NewKubectl) int {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file")
	kctx := fs.String("context", "", "kubeconfig context")
	ns := fs.String("n", "", "the pod's namespace (default: the context's)")
	fs.StringVar(ns, "namespace", "", "the pod's namespace")
	node := fs.String("node", "", "the node to inspect (with --all)")
	all := fs.Bool("all", false, "every pod sandbox on --node")
	out := fs.String("o", "text", "text or json")
	image := fs.String("image", "", "the inspector image (default: the mesh-cni DaemonSet's)")
	insNS := fs.String("inspector-namespace", "mesh-cni-system", "where the inspector pod runs")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the inspector")
	if err := fs.Parse(podLast(args)); err != nil {
		return ExitUsage
	}
	if (*all && (*node == "" || fs.NArg() > 0)) || (!*all && fs.NArg() != 1) || (*out != "text" && *out != "json") {
		fmt.Fprintln(stderr, usage)
		return ExitUsage
	}
	// Interrupted, the inspector pod is still deleted (Run's defer).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	k := newKubectl(*kubeconfig, *kctx)
	spec := Spec{Namespace: *insNS, Node: *node, Image: *image, Args: []string{"--all", "-o", *out}}
	if !*all {
		podNS, err := namespace(ctx, k, *ns)
		if err != nil {
			fmt.Fprintf(stderr, "kubectl mesh-cni: %v\n", err)
			return ExitFailed
		}
		name := fs.Arg(0)
		nodeName, err := k.Run(ctx, nil, "get", "pod", "-n", podNS, name, "-o", "jsonpath={.spec.nodeName}")
		if err != nil {
			fmt.Fprintf(stderr, "kubectl mesh-cni: pod %s/%s: %v\n", podNS, name, err)
			return ExitUnknown
		}
		if spec.Node = strings.TrimSpace(string(nodeName)); spec.Node == "" {
			fmt.Fprintf(stderr, "kubectl mesh-cni: pod %s/%s is not scheduled to a node yet: no sandbox to inspect\n", podNS, name)
			return ExitUnknown
		}
		spec.Args = []string{podNS + "/" + name, "-o", *out}
	}
	if spec.Image == "" {
		img, err := k.Run(ctx, nil, "get", "daemonset", "-n", *insNS, "mesh-cni-node", "-o",
			`jsonpath={.spec.template.spec.containers[?(@.name=="install-cni")].image}`)
		if err != nil || len(img) == 0 {
			fmt.Fprintf(stderr, "kubectl mesh-cni: finding the mesh-cni image (pass --image): %v\n", err)
			return ExitFailed
		}
		spec.Image = strings.TrimSpace(string(img))
	}
	res, err := Run(ctx, k, spec, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "kubectl mesh-cni: %v\n", err)
		return ExitFailed
	}
	if _, err := stdout.Write(res.Output); err != nil {
		return ExitFailed
	}
	return res.Exit
}

// namespace is -n, else the context's namespace, else default.
func namespace(ctx context.Context, k Kubectl, flagNS string) (string, error) {
	if flagNS != "" {
		return flagNS, nil
	}
	out, err := k.Run(ctx, nil, "config", "view", "--minify", "-o", "jsonpath={..namespace}")
	if err != nil {
		return "", err
	}
	if ns := strings.TrimSpace(string(out)); ns != "" {
		return ns, nil
	}
	return "default", nil
}

// podLast moves positional arguments after the flags (kubectl users write
// "inspect POD -n NS").
func podLast(args []string) []string {
	bools := map[string]bool{"--all": true, "-all": true}
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case !strings.HasPrefix(a, "-") || a == "-":
			pos = append(pos, a)
		default:
			flags = append(flags, a)
			if !strings.Contains(a, "=") && !bools[a] && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
		}
	}
	return append(flags, pos...)
}

// dropConnFlags removes --kubeconfig and --context (explain is offline).
func dropConnFlags(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--kubeconfig" || a == "--context":
			i++
		case strings.HasPrefix(a, "--kubeconfig=") || strings.HasPrefix(a, "--context="):
		default:
			out = append(out, a)
		}
	}
	return out
}
