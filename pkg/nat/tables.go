package nat

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/meshcni/mesh-cni/pkg/redirect"
)

// Netns is a pod's nat tables, reached through the host's iptables tools.
// It implements redirect.Tables.
type Netns struct {
	Path    string
	Backend Backend // legacy or nft, already resolved
	// LockWait is how long iptables-restore waits for the xtables lock
	// (held by kube-proxy and friends) before it gives up.
	LockWait time.Duration
	// IsolationErr is, after a call, why the files-only NSS isolation could
	// not be set up (nil when it was); the command ran all the same.
	IsolationErr error

	lockFile  *os.File // the netns file, flocked while lockDepth > 0
	lockDepth int
}

var (
	_ redirect.Tables = (*Netns)(nil)
	_ redirect.Locker = (*Netns)(nil)
)

func (n *Netns) tool(fam redirect.Family, verb string) string {
	base := "iptables"
	if fam == redirect.IPv6 {
		base = "ip6tables"
	}
	return base + "-" + string(n.Backend) + "-" + verb
}

// Save implements redirect.Tables.
func (n *Netns) Save(fam redirect.Family) (string, error) {
	out, err := n.run(nil, n.tool(fam, "save"), "-t", "nat")
	return string(out), err
}

// Restore implements redirect.Tables.
func (n *Netns) Restore(fam redirect.Family, script string) error {
	wait := int(n.LockWait / time.Second)
	if wait < 1 {
		wait = 1
	}
	_, err := n.run([]byte(script), n.tool(fam, "restore"), "--noflush", "--wait", strconv.Itoa(wait))
	return err
}

func (n *Netns) run(stdin []byte, name string, args ...string) ([]byte, error) {
	var out []byte
	err := inNetns(n.Path, func(isolateErr error) error {
		n.IsolationErr = isolateErr
		cmd := exec.Command(name, args...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(stderr.String())
			if strings.Contains(msg, "holding the xtables lock") {
				// Legacy only: nft does not take the xtables lock.
				return fmt.Errorf("%s: %w: %s (%w)", name, err, msg, redirect.ErrBusy)
			}
			return fmt.Errorf("%s: %w: %s", name, err, msg)
		}
		out = stdout.Bytes()
		return nil
	})
	return out, err
}
