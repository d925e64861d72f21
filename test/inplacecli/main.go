// Command inplacecli runs the node agent's in-place repair (pkg/inplace) on
// one pod, outside the agent: for the e2e when the repair controller is not
// wired, and for finding which capabilities the repair really needs.
//
//	kubectl get pod -o json NAME | inplacecli repair|verify --conflist PATH
//
// The pod's status.podIPs choose the families, as the agent's cache does.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/inplace"
	"github.com/meshcni/mesh-cni/pkg/pod"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "inplacecli:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) < 1 || args[0] != "repair" && args[0] != "verify" {
		return fmt.Errorf("usage: inplacecli repair|verify --conflist PATH < pod.json")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	conflist := fs.String("conflist", "", "the installed conflist holding the mesh-cni entry")
	procRoot := fs.String("proc", "/proc", "the host's /proc")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := config.Load(*conflist)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(stdin)
	if err != nil {
		return err
	}
	p, err := pod.Decode(body)
	if err != nil {
		return fmt.Errorf("pod JSON: %w", err)
	}
	var st struct {
		Status struct {
			PodIPs []struct {
				IP string `json:"ip"`
			} `json:"podIPs"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("pod JSON: %w", err)
	}
	var ips []string
	for _, a := range st.Status.PodIPs {
		ips = append(ips, a.IP)
	}
	r := inplace.New()
	r.ProcRoot = *procRoot
	ctx := context.Background()
	if args[0] == "verify" {
		ok, detail, err := r.Verify(ctx, p, ips, cfg)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("not redirected: %s", detail)
		}
		fmt.Fprintln(stdout, "redirected")
		return nil
	}
	detail, err := r.RepairInPlace(ctx, p, ips, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, detail)
	return nil
}
