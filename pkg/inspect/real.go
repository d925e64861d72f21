package inspect

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshcni/mesh-cni/pkg/agentapi"
	"github.com/meshcni/mesh-cni/pkg/config"
	"github.com/meshcni/mesh-cni/pkg/k8s"
	"github.com/meshcni/mesh-cni/pkg/nat"
	"github.com/meshcni/mesh-cni/pkg/pod"
)

// CNIConfDir is where the runtime reads the conflist mesh-cni is chained in.
const CNIConfDir = "/etc/cni/net.d"

// CheckNetns reports whether path is still a network namespace: deleted
// (ENOENT) or an unmounted leftover file is not. statfs never opens the
// path, so a FIFO planted there cannot block it.
func CheckNetns(path string) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return err
	}
	if fs.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("not a network namespace (filesystem type 0x%x)", fs.Type)
	}
	return nil
}

// RealTables opens a netns's tables with the backend ADD resolves.
func RealTables(cfg *config.Config) (func(string) Tables, error) {
	b, err := cfg.Backend.Resolve()
	if err != nil {
		return nil, fmt.Errorf("iptablesBackend: %w", err)
	}
	return func(path string) Tables {
		return &nat.Netns{Path: path, Backend: b, LockWait: 5 * time.Second}
	}, nil
}

// RealPods reads a pod from the node agent's cache, else from the API with
// the plug-in's kubeconfig: the two sources ADD reads.
type RealPods struct{ Config *config.Config }

// Pod implements PodSource.
func (r RealPods) Pod(ctx context.Context, namespace, name string) (*pod.Pod, error) {
	var agentErr error
	if r.Config.AgentSocket != "" {
		c := &agentapi.Client{Socket: r.Config.AgentSocket}
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		p, uid, err := c.GetPod(actx, agentapi.PodRequest{Namespace: namespace, Name: name, WaitMillis: 500})
		cancel()
		if err == nil {
			p.Metadata.UID = uid
			return p, nil
		}
		agentErr = err
	}
	if r.Config.Kubeconfig == "" {
		return nil, errors.Join(agentErr, errors.New("no kubeconfig in the mesh-cni config to read the pod from the API"))
	}
	cl, err := k8s.NewClient(r.Config.Kubeconfig, 5*time.Second)
	if err != nil {
		return nil, errors.Join(agentErr, err)
	}
	p, err := cl.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, errors.Join(agentErr, err)
	}
	return p, nil
}

// FindConfig is the node's conflist holding the mesh-cni entry: the
// lexically first, as the runtime picks.
func FindConfig(dir string) (string, error) {
	var names []string
	for _, pat := range []string{"*.conflist", "*.conf"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		names = append(names, m...)
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			continue
		}
		if _, err := config.MeshEntry(b); err == nil && strings.Contains(string(b), `"mesh-cni"`) {
			return n, nil
		}
	}
	return "", fmt.Errorf("no conflist with a mesh-cni entry in %s (is mesh-cni installed on this node?)", dir)
}
