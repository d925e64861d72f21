package agentapi

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// Cred is a unix socket peer's identity as the kernel recorded it
// (SO_PEERCRED): for the agent, the plug-in process that connected; for the
// plug-in, the process that created the listening socket.
type Cred struct {
	PID      int32
	UID, GID uint32
}

// PeerCred reads the peer's credentials of a unix connection.
func PeerCred(c *net.UnixConn) (Cred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Cred{}, err
	}
	var uc *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		uc, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Cred{}, err
	}
	if serr != nil {
		return Cred{}, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	return Cred{PID: uc.Pid, UID: uc.Uid, GID: uc.Gid}, nil
}

// CheckPeer is the trust rule on both ends: only uid 0 — the container
// runtime that runs the plug-in, and the agent in its DaemonSet — may be on
// the other side. Anyone else could feed the plug-in a forged pod or flood
// the agent's logs and Events.
func CheckPeer(c Cred, wantUID uint32) error {
	if c.UID != wantUID {
		return fmt.Errorf("peer pid %d runs as uid %d, only uid %d may use the agent socket", c.PID, c.UID, wantUID)
	}
	return nil
}
