// Package nat reads and writes a pod netns's nat table with the host's
// iptables tools.
package nat

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Backend is the iptables flavour: the kernel's x_tables (legacy) or nf_tables.
type Backend string

const (
	Auto   Backend = "auto"
	Legacy Backend = "legacy"
	NFT    Backend = "nft"
)

// ParseBackend validates a config value.
func ParseBackend(s string) (Backend, error) {
	switch b := Backend(s); b {
	case "":
		return Auto, nil
	case Auto, Legacy, NFT:
		return b, nil
	}
	return "", fmt.Errorf("unknown iptables backend %q (want auto, legacy or nft)", s)
}

// Resolve turns auto into the host's backend: legacy when the host netns's
// legacy tables hold rules (kube-proxy and the primary CNI chose legacy),
// else nft. It runs in the host netns, where the plug-in starts.
func (b Backend) Resolve() (Backend, error) {
	if b != Auto {
		return b, nil
	}
	// Cheap first look: with no legacy table registered in this netns
	// there is nothing to ask iptables-legacy-save about.
	// thread-self, not /proc/net (the main thread's netns): correct even
	// when the caller's thread has entered another netns.
	names, err := os.ReadFile("/proc/thread-self/net/ip_tables_names")
	if err != nil || len(bytes.TrimSpace(names)) == 0 {
		return NFT, nil
	}
	out, err := exec.Command("iptables-legacy-save").Output()
	if err != nil {
		// No legacy tools on the node: it cannot be a legacy node.
		return NFT, nil
	}
	if hasRules(out) {
		return Legacy, nil
	}
	return NFT, nil
}

func hasRules(save []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(save))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "-A ") {
			return true
		}
	}
	return false
}
