// Package cnitest holds what the real-kernel tests, the chain test, the
// demo and the benchmark share: network namespaces with a peer, a read-only
// pod server, and a CNI chain run through libcni.
package cnitest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Netns is a named network namespace ("ip netns add"), visible to
// operators as /run/netns/NAME while it lives.
type Netns struct {
	Name string
}

// Path is the bind mount a CNI runtime passes as CNI_NETNS.
func (n *Netns) Path() string { return "/run/netns/" + n.Name }

// NewNetns creates a namespace with lo up.
func NewNetns(prefix string) (*Netns, error) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	n := &Netns{Name: prefix + "-" + hex.EncodeToString(b)}
	if err := Run("ip", "netns", "add", n.Name); err != nil {
		return nil, err
	}
	if err := n.Run("ip", "link", "set", "lo", "up"); err != nil {
		n.Delete()
		return nil, err
	}
	return n, nil
}

// Delete removes the namespace; processes still in it die with their
// sockets' namespace when they exit, so callers stop them first.
func (n *Netns) Delete() {
	_ = Run("ip", "netns", "del", n.Name)
}

// Run runs a command inside the namespace as root.
func (n *Netns) Run(name string, args ...string) error {
	_, err := n.Output(name, args...)
	return err
}

// Output runs a command inside the namespace and returns its stdout.
func (n *Netns) Output(name string, args ...string) (string, error) {
	return output(n.Command(0, 0, name, args...))
}

// Command is a command that will run in the namespace as uid/gid (0 = root).
func (n *Netns) Command(uid, gid int, name string, args ...string) *exec.Cmd {
	full := []string{"--net=" + n.Path()}
	if uid != 0 || gid != 0 {
		full = append(full, fmt.Sprintf("--setuid=%d", uid), fmt.Sprintf("--setgid=%d", gid))
	}
	full = append(full, "--", name)
	return exec.Command("nsenter", append(full, args...)...)
}

// Run runs a command in the current namespace.
func Run(name string, args ...string) error {
	_, err := output(exec.Command(name, args...))
	return err
}

func output(cmd *exec.Cmd) (string, error) {
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// Link joins two namespaces with a veth pair: a's end is ifA with addrA,
// b's end is ifB with addrB (CIDR notation, several separated by commas).
func Link(a *Netns, ifA, addrsA string, b *Netns, ifB, addrsB string) error {
	tmp := "mcv" + a.Name[len(a.Name)-8:]
	if err := Run("ip", "link", "add", tmp, "type", "veth", "peer", "name", tmp+"p"); err != nil {
		return err
	}
	steps := [][]string{
		{"ip", "link", "set", tmp, "netns", a.Name, "name", ifA},
		{"ip", "link", "set", tmp + "p", "netns", b.Name, "name", ifB},
	}
	for _, s := range steps {
		if err := Run(s[0], s[1:]...); err != nil {
			_ = Run("ip", "link", "del", tmp)
			return err
		}
	}
	for _, side := range []struct {
		ns    *Netns
		ifc   string
		addrs string
	}{{a, ifA, addrsA}, {b, ifB, addrsB}} {
		for _, addr := range strings.Split(side.addrs, ",") {
			args := []string{"addr", "add", addr, "dev", side.ifc}
			if strings.Contains(addr, ":") {
				args = append(args, "nodad")
			}
			if err := side.ns.Run("ip", args...); err != nil {
				return err
			}
		}
		if err := side.ns.Run("ip", "link", "set", side.ifc, "up"); err != nil {
			return err
		}
	}
	return nil
}

// RequireRoot says why a test cannot run; "" when it can.
func RequireRoot() string {
	if os.Geteuid() != 0 {
		return "needs root: it creates network namespaces and iptables rules"
	}
	return ""
}
