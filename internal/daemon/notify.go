package daemon

import (
	"net"
	"os"
)

// Notify tells systemd about the service's state (sd_notify: "READY=1",
// "RELOADING=1", "STOPPING=1", "MAINPID=…"), when it started the process
// with a notification socket (Type=notify); otherwise it does nothing.
func Notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' { // an abstract socket
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}
