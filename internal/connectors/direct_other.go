//go:build !unix

package connectors

import "net"

// directSupported: without a way to peek at a kept connection,
// DirectTransport hands every request to net/http's transport.
const directSupported = false

func connAlive(net.Conn) bool { return false }
