package plugin

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
)

// Plug-in specific CNI error codes (the spec reserves 100+ for plug-ins).
const (
	CodePodLookup     uint = 101 // the pod could not be read and the policy blocks
	CodeBadAnnotation uint = 102 // a redirect annotation does not parse
	CodeRulesDiffer   uint = 103 // CHECK: the netns does not hold the expected rules
	CodeProgramming   uint = 104 // iptables refused the rules
)

func cniErr(code uint, format string, a ...any) *types.Error {
	return types.NewError(code, fmt.Sprintf(format, a...), "")
}
