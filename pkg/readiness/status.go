package readiness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/version"

	"github.com/meshcni/mesh-cni/pkg/config"
)

// Prober runs the installed plug-in's STATUS for the conflist at path.
type Prober interface {
	Status(ctx context.Context, conflistPath string) error
}

// statusVersion is the first CNI version with STATUS.
const statusVersion = "1.1.0"

// StatusStdin is the network config STATUS gets: our entry of the
// conflist as the runtime passes it (config.MeshEntry: the list's
// cniVersion and name), with what names host paths turned into this
// container's view: the kubeconfig under hostKubeconfigDir is looked for
// under kubeconfigDir; logFile (a host path, not mounted) is dropped. A
// list older than CNI 1.1.0 gets cniVersion 1.1.0: a runtime skips STATUS
// for it, but the check is the plug-in's own readiness, which we want
// whatever the list's version.
func StatusStdin(conflist []byte, hostKubeconfigDir, kubeconfigDir string) ([]byte, error) {
	entry, err := config.MeshEntry(conflist)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(entry, &m); err != nil {
		return nil, fmt.Errorf("mesh-cni entry: %w", err)
	}
	var typ, kc, ver string
	if json.Unmarshal(m["type"], &typ) != nil || typ != "mesh-cni" {
		return nil, errors.New("no mesh-cni entry (type mesh-cni)")
	}
	if raw, ok := m["kubeconfig"]; ok {
		if err := json.Unmarshal(raw, &kc); err != nil {
			return nil, fmt.Errorf("mesh-cni entry: kubeconfig: %w", err)
		}
		m["kubeconfig"], _ = json.Marshal(containerPath(kc, hostKubeconfigDir, kubeconfigDir))
	}
	delete(m, "logFile")
	if raw, ok := m["cniVersion"]; ok {
		if err := json.Unmarshal(raw, &ver); err != nil {
			return nil, fmt.Errorf("mesh-cni entry: cniVersion: %w", err)
		}
	}
	if newer, err := version.GreaterThanOrEqualTo(ver, statusVersion); err != nil || !newer {
		m["cniVersion"], _ = json.Marshal(statusVersion)
	}
	return json.Marshal(m)
}

// containerPath maps a host path under hostDir to the same file under dir.
func containerPath(p, hostDir, dir string) string {
	if hostDir == "" || hostDir == dir {
		return p
	}
	rel, err := filepath.Rel(hostDir, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return p
	}
	return filepath.Join(dir, rel)
}

// ExecProber runs the plug-in binary the installer put in the CNI bin dir
// (not the image's copy: the node runs that one) with CNI_COMMAND=STATUS.
type ExecProber struct {
	Binary            string // the installed plug-in, as this process sees it
	CNIPath           string // CNI_PATH (the CNI bin dir)
	HostKubeconfigDir string // the plug-in kubeconfig's dir as the host (and the entry) names it ...
	KubeconfigDir     string // ... and as this process sees it
	// Path is the plug-in's PATH: where it looks for iptables-restore. In
	// the DaemonSet it is the host's /usr/sbin mounted read-only, so the
	// check finds what the runtime's plug-in will find, not the image's.
	Path    string
	Timeout time.Duration // 0: 10s
}

// Status runs STATUS once; the error carries the plug-in's CNI error
// message when it printed one.
func (p *ExecProber) Status(ctx context.Context, conflistPath string) error {
	if conflistPath == "" {
		return errors.New("no conflist to read our entry from")
	}
	raw, err := os.ReadFile(conflistPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", conflistPath, err)
	}
	stdin, err := StatusStdin(raw, p.HostKubeconfigDir, p.KubeconfigDir)
	if err != nil {
		return fmt.Errorf("%s: %w", conflistPath, err)
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.Binary)
	cmd.Env = []string{"CNI_COMMAND=STATUS", "CNI_PATH=" + p.CNIPath, "PATH=" + p.Path}
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return statusError(err, stdout.Bytes(), stderr.Bytes())
	}
	return nil
}

// statusError turns a failed STATUS into an error naming the plug-in's
// own message (its CNI error on stdout) when there is one.
func statusError(err error, stdout, stderr []byte) error {
	var cniErr struct {
		Code    int    `json:"code"`
		Msg     string `json:"msg"`
		Details string `json:"details"`
	}
	if json.Unmarshal(stdout, &cniErr) == nil && cniErr.Msg != "" {
		msg := cniErr.Msg
		if cniErr.Details != "" {
			msg += ": " + cniErr.Details
		}
		return fmt.Errorf("%s (CNI error code %d)", msg, cniErr.Code)
	}
	out := strings.TrimSpace(string(stderr))
	if len(out) > 512 {
		out = out[:512] + "..."
	}
	if out == "" {
		return fmt.Errorf("exec: %w", err)
	}
	return fmt.Errorf("exec: %w: %s", err, out)
}
