package main

// Reading a netns back: the seed's rules, or none of ours.

import (
	"fmt"
	"strings"

	"github.com/meshcni/mesh-cni/pkg/redirect"
	"github.com/meshcni/mesh-cni/test/cnitest"
)

func (e *env) readTable(n *cnitest.Netns) (redirect.Table, error) {
	text, err := n.Output(e.save, "-t", "nat")
	if err != nil {
		return redirect.Table{}, err
	}
	return redirect.ParseSave(text)
}

// verifySeed: the netns holds exactly the seed's rules in the seed's order.
func (e *env) verifySeed(n *cnitest.Netns) error {
	t, err := e.readTable(n)
	if err != nil {
		return err
	}
	if d := redirect.Diff(e.seed, t); len(d) > 0 {
		return fmt.Errorf("netns %s does not hold the seed's rules:\n  %s", n.Name, strings.Join(d, "\n  "))
	}
	return nil
}

// verifyUntouched: an excluded pod's netns has none of our chains.
func (e *env) verifyUntouched(n *cnitest.Netns) error {
	t, err := e.readTable(n)
	if err != nil {
		return err
	}
	for _, c := range redirect.OwnChains {
		if t.Has(c) {
			return fmt.Errorf("excluded pod's netns %s has chain %s", n.Name, c)
		}
	}
	return nil
}
