//go:build unix

package connectors

import (
	"net"
	"syscall"
)

// directSupported: connAlive can look at a kept connection here.
const directSupported = true

// connAlive peeks at a kept connection without blocking: it is fit for
// another request only when nothing is there to read. A server that closed
// it (an idle timeout, as uvicorn's five seconds) shows as end of file; one
// that sent something unasked has broken the exchange.
func connAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true // done, whatever the answer: never wait for data
	})
	return err == nil && alive
}
