package inspect

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/meshcni/mesh-cni/pkg/config"
)

// ExitUsage is a bad command line or an unreadable config.
const ExitUsage = 64

// Command is `mesh-cni inspect NAMESPACE/POD | --all [-o text|json]`, run
// on the node (as root: entering a netns needs CAP_SYS_ADMIN, reading its
// tables CAP_NET_ADMIN).
func Command(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	all := fs.Bool("all", false, "one line per pod sandbox recorded on this node")
	out := fs.String("o", "text", "output: text or json")
	cfgPath := fs.String("config", "", "the conflist (or bare entry) to read; default: the one in "+CNIConfDir+" holding mesh-cni")
	dir := fs.String("sandbox-dir", "", "the sandbox records; default: the config's sandboxDir")
	root := fs.String("root", "", "chroot here first: the host's / mounted in an inspector container (e.g. /host)")
	if err := fs.Parse(reorder(args)); err != nil {
		return ExitUsage
	}
	target := fs.Arg(0)
	ns, name, ok := strings.Cut(target, "/")
	if (*all == (target != "")) || fs.NArg() > 1 || (!*all && (!ok || ns == "" || name == "")) || (*out != "text" && *out != "json") {
		fmt.Fprintln(stderr, "usage: mesh-cni inspect NAMESPACE/POD | --all [-o text|json] [--config FILE] [--sandbox-dir DIR] [--root DIR]")
		return ExitUsage
	}
	if *root != "" {
		if err := enterRoot(*root); err != nil {
			fmt.Fprintf(stderr, "mesh-cni inspect: --root %s: %v\n", *root, err)
			return ExitUsage
		}
	}
	node, err := realNode(*cfgPath, *dir)
	if err != nil {
		fmt.Fprintf(stderr, "mesh-cni inspect: %v\n", err)
		return ExitUsage
	}
	ctx := context.Background()
	if *all {
		lines, err := node.All(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "mesh-cni inspect: %v\n", err)
			return Failed.Exit()
		}
		if *out == "json" {
			if lines == nil {
				lines = []Line{}
			}
			err = writeJSON(stdout, lines)
		} else {
			err = WriteLines(stdout, lines)
		}
		if err != nil {
			return Failed.Exit()
		}
		return Worst(lines)
	}
	r := node.One(ctx, ns, name)
	if *out == "json" {
		err = writeJSON(stdout, r)
	} else {
		err = WriteResult(stdout, r)
	}
	if err != nil {
		return Failed.Exit()
	}
	return r.Status.Exit()
}

// reorder lets the pod come before the flags, as kubectl users write it.
func reorder(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case !strings.HasPrefix(a, "-") || a == "-":
			pos = append(pos, a)
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		default:
			flags = append(flags, a)
			if !strings.Contains(a, "=") && a != "--all" && a != "-all" && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
		}
	}
	return append(flags, pos...)
}

// nodePath is where the node's tools are, when the environment names none
// (an image without a shell sets no PATH, and exec looks the tools up in
// this process's PATH).
const nodePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func enterRoot(root string) error {
	if err := unix.Chroot(root); err != nil {
		return err
	}
	if os.Getenv("PATH") == "" {
		if err := os.Setenv("PATH", nodePath); err != nil {
			return err
		}
	}
	return os.Chdir("/")
}

func realNode(cfgPath, dir string) (*Node, error) {
	if cfgPath == "" {
		p, err := FindConfig(CNIConfDir)
		if err != nil {
			return nil, err
		}
		cfgPath = p
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	if dir == "" {
		dir = cfg.SandboxDir
	}
	if dir == "" {
		return nil, fmt.Errorf("%s: sandboxDir is off (\"\"): ADD keeps no records to inspect; pass --sandbox-dir", cfgPath)
	}
	tables, err := RealTables(cfg)
	if err != nil {
		return nil, err
	}
	return &Node{Config: cfg, SandboxDir: dir, Pods: RealPods{Config: cfg}, Tables: tables, CheckNetns: CheckNetns}, nil
}
