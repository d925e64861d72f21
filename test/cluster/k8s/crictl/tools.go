//go:build tools

// Package crictl pins sigs.k8s.io/cri-tools for ../../build-k8s.sh.
package crictl

import _ "sigs.k8s.io/cri-tools/cmd/crictl"
