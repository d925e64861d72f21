package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"
)

// SO_ORIGINAL_DST (and IP6T_SO_ORIGINAL_DST, the same number) return the
// destination a connection had before the nat table's REDIRECT rewrote it.
const soOriginalDst = 80

func originalDst(c *net.TCPConn) (string, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return "", err
	}
	local := c.LocalAddr().(*net.TCPAddr)
	v6 := local.IP.To4() == nil
	var out string
	var serr error
	err = raw.Control(func(fd uintptr) {
		var buf [28]byte // sockaddr_in6 is the larger
		size := uint32(len(buf))
		level := syscall.SOL_IP
		if v6 {
			level = syscall.SOL_IPV6
		}
		_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, uintptr(level), soOriginalDst,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		if e != 0 {
			serr = e
			return
		}
		port := binary.BigEndian.Uint16(buf[2:4])
		if v6 {
			out = netip.AddrPortFrom(netip.AddrFrom16([16]byte(buf[8:24])), port).String()
		} else {
			out = netip.AddrPortFrom(netip.AddrFrom4([4]byte(buf[4:8])), port).String()
		}
	})
	if err != nil {
		return "", err
	}
	if serr != nil {
		return "", fmt.Errorf("getsockopt SO_ORIGINAL_DST: %w", serr)
	}
	return out, nil
}
