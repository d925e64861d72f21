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

	lockFile    *os.File // the netns file, flocked while lockDepth > 0
	lockDepth   int
	interleaved bool // the last Restore may have merged with another commit
}

var (
	_ redirect.Tables      = (*Netns)(nil)
	_ redirect.Locker      = (*Netns)(nil)
	_ redirect.Interleaver = (*Netns)(nil)
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
	var before uint32
	var genErr error
	n.interleaved = true
	_, err := n.runAround(func() {
		if n.Backend == NFT {
			before, genErr = nftGeneration()
		}
	}, func() {
		n.interleaved = n.Backend == NFT && interleaved(before, genErr)
	}, []byte(script), n.tool(fam, "restore"), "--noflush", "--wait", strconv.Itoa(wait))
	return err
}

// interleaved reports whether a commit other than the restore's own may
// have landed since the generation was read before it (read in the same
// thread, so in the same netns). Unknown counts as yes.
func interleaved(before uint32, err error) bool {
	after, aerr := nftGeneration()
	return err != nil || aerr != nil || after-before != 1
}

// Interleaved implements redirect.Interleaver. Legacy: every writer takes
// the xtables lock, and the kernel refuses (EAGAIN) a table replace built
// on a table that changed meanwhile, so a legacy restore never merges with
// another writer's. nft: the restore re-plays its transaction against a
// concurrent commit instead of failing; the nf_tables generation, read
// before and after, tells whether any other commit came in between.
func (n *Netns) Interleaved() bool { return n.interleaved }

func (n *Netns) run(stdin []byte, name string, args ...string) ([]byte, error) {
	return n.runAround(func() {}, func() {}, stdin, name, args...)
}

// runAround runs the command in the netns, with before and after run in
// the same thread, so in the same netns, around it.
func (n *Netns) runAround(before, after func(), stdin []byte, name string, args ...string) ([]byte, error) {
	var out []byte
	err := inNetns(n.Path, func(isolateErr error) error {
		n.IsolationErr = isolateErr
		before()
		defer after()
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
