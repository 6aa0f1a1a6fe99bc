package daemon

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNotify(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	assert.NoError(t, Notify("READY=1"), "without systemd: nothing to do")

	path := filepath.Join(t.TempDir(), "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	defer sock.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	require.NoError(t, Notify("MAINPID=42\nREADY=1"))
	buf := make([]byte, 64)
	_ = sock.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := sock.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "MAINPID=42\nREADY=1", string(buf[:n]))
}
