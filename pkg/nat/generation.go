package nat

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// nftGeneration asks the kernel, over netlink, for the nf_tables ruleset
// generation of the calling thread's netns. Every successful nf_tables
// commit in that netns increments it by one. No process is started: this
// costs a socket round trip, where reading the table back costs an exec.
func nftGeneration() (uint32, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, fmt.Errorf("nf_tables generation: %w", err)
	}
	defer unix.Close(fd)
	// nlmsghdr (16 bytes) + nfgenmsg (4 bytes: family, version, res_id).
	req := make([]byte, unix.NLMSG_HDRLEN+4)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETGEN)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], 1) // sequence
	req[16], req[17] = unix.AF_UNSPEC, unix.NFNETLINK_V0
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("nf_tables generation: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, fmt.Errorf("nf_tables generation: %w", err)
	}
	return parseGeneration(buf[:n])
}

// parseGeneration reads NFTA_GEN_ID out of the kernel's NEWGEN answer.
func parseGeneration(b []byte) (uint32, error) {
	if len(b) < unix.NLMSG_HDRLEN {
		return 0, errors.New("nf_tables generation: short answer")
	}
	if binary.NativeEndian.Uint16(b[4:]) == unix.NLMSG_ERROR {
		if len(b) >= unix.NLMSG_HDRLEN+4 {
			if errno := -int32(binary.NativeEndian.Uint32(b[unix.NLMSG_HDRLEN:])); errno != 0 {
				return 0, fmt.Errorf("nf_tables generation: %w", unix.Errno(errno))
			}
		}
		return 0, errors.New("nf_tables generation: error answer")
	}
	msgLen := min(int(binary.NativeEndian.Uint32(b[0:])), len(b))
	for a := unix.NLMSG_HDRLEN + 4; a+4 <= msgLen; {
		attrLen := int(binary.NativeEndian.Uint16(b[a:]))
		attrType := binary.NativeEndian.Uint16(b[a+2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if attrLen < 4 || a+attrLen > msgLen {
			break
		}
		if attrType == unix.NFTA_GEN_ID && attrLen >= 8 {
			return binary.BigEndian.Uint32(b[a+4:]), nil
		}
		a += (attrLen + 3) &^ 3
	}
	return 0, errors.New("nf_tables generation: no generation in the answer")
}
