package membership

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

// Gossip timing profiles, as in memberlist.
const (
	// ProfileLAN suits hosts on one network: probe every 1 s, failure detected
	// in about 5 s on a small cluster. The default.
	ProfileLAN = "lan"
	// ProfileLocal suits one machine (tests, the demo): probe every 1 s with a
	// shorter suspicion time, failures detected in about 3 s.
	ProfileLocal = "local"
	// ProfileWAN suits hosts across data centres: slower, more tolerant.
	ProfileWAN = "wan"
)

// Config configures a Cluster member.
type Config struct {
	// NodeName must be unique in the cluster. Required.
	NodeName string
	// BindAddr is the "ip:port" gossip listens on (TCP and UDP). Port 0 picks
	// a free port. Default "0.0.0.0:7946".
	BindAddr string
	// AdvertiseAddr is the "ip" or "ip:port" other members reach this one at.
	// Empty: the bind address, or a private address of this host when binding
	// to all interfaces.
	AdvertiseAddr string
	// EncryptKey enables gossip encryption (AES, 16, 24 or 32 bytes; see
	// ParseKey). Nil: gossip is plain text and encrypted peers reject it.
	EncryptKey []byte
	// Tags are announced at start; SetTags replaces them.
	Tags Tags
	// KeyringPath, if set, is where the gossip keys are kept across restarts
	// once rotated (InstallKey, UseKey, RemoveKey); when the file exists it
	// takes precedence over EncryptKey.
	KeyringPath string
	// SnapshotPath, if set, is where Serf records the members it knows; a
	// restarted node rejoins them from it at once, without a --join.
	SnapshotPath string
	// Profile selects gossip timings: ProfileLAN (default), ProfileLocal or
	// ProfileWAN.
	Profile string
	// EventCh, if set, receives membership events, one node per event, each
	// member's in the order they happened. A consumer that falls behind never
	// stalls gossip: while the channel is full, a member's newer event
	// replaces its older one not yet taken, so the consumer gets every
	// member's latest state (type and Node), not every step in between
	// (counted in Stats.EventsCoalesced). Events not taken by Shutdown are
	// dropped.
	EventCh chan<- Event
	// QueryCh, if set, receives queries addressed to this node. A query that
	// finds the channel full is dropped, logged and counted in
	// Stats.QueriesDropped: gossip never waits for the consumer, and the
	// asker sees no answer from this member, as with a lost datagram (Deploy
	// asks twice). Queries not answered before their deadline are dropped by
	// the asker.
	QueryCh chan<- *Query
	// Logger receives the member's logs, and Serf's and memberlist's.
	// Default: hclog's default logger.
	Logger hclog.Logger
}

// DefaultConfig returns a Config with the defaults documented on each field.
func DefaultConfig() *Config {
	return &Config{
		BindAddr: "0.0.0.0:7946",
		Profile:  ProfileLAN,
		Logger:   hclog.Default(),
	}
}

// ParseKey decodes a base64 gossip key and checks its length.
func ParseKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("gossip key is not valid base64: %w", err)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	default:
		return nil, fmt.Errorf("gossip key is %d bytes; it must be 16, 24 or 32 (use 'clusterctl keygen')", len(key))
	}
}

func (c *Config) memberlistConfig() (*memberlist.Config, error) {
	var mc *memberlist.Config
	switch c.Profile {
	case ProfileLAN, "":
		mc = memberlist.DefaultLANConfig()
	case ProfileLocal:
		mc = memberlist.DefaultLANConfig()
		mc.SuspicionMult = 2
		mc.ProbeTimeout = 200e6 // 200 ms: loopback round trips take microseconds
		mc.GossipInterval = 100e6
	case ProfileWAN:
		mc = memberlist.DefaultWANConfig()
	default:
		return nil, fmt.Errorf("unknown gossip profile %q (want lan, local or wan)", c.Profile)
	}
	host, port, err := splitHostPort(c.BindAddr, 7946)
	if err != nil {
		return nil, fmt.Errorf("bind address %q: %w", c.BindAddr, err)
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	if c.AdvertiseAddr != "" {
		host, aport, err := splitHostPort(c.AdvertiseAddr, port)
		if err != nil {
			return nil, fmt.Errorf("advertise address %q: %w", c.AdvertiseAddr, err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = host, aport
	}
	if c.EncryptKey != nil {
		mc.SecretKey = c.EncryptKey
	}
	mc.Name = c.NodeName
	return mc, nil
}

// splitHostPort accepts "ip:port" or a bare "ip", which gets defPort.
func splitHostPort(s string, defPort int) (string, int, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		if ip := net.ParseIP(s); ip != nil {
			return s, defPort, nil
		}
		return "", 0, err
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("%q is not an IP address", host)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", portStr)
	}
	return host, port, nil
}

// AdvertiseIP returns the address other members will reach this one at, as
// memberlist chooses it: the advertise address, else the bind address, else
// (binding to all interfaces) this host's private address.
func (c *Config) AdvertiseIP() (netip.Addr, error) {
	for _, s := range []string{c.AdvertiseAddr, c.BindAddr} {
		if s == "" {
			continue
		}
		host, _, err := splitHostPort(s, 0)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("address %q: %w", s, err)
		}
		if ip := netip.MustParseAddr(host); !ip.IsUnspecified() {
			return ip.Unmap(), nil
		}
	}
	s, err := sockaddr.GetPrivateIP()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: %w", ErrNoAdvertiseAddr, err)
	}
	if s == "" {
		return netip.Addr{}, ErrNoAdvertiseAddr
	}
	return netip.ParseAddr(s)
}

// ErrNoAdvertiseAddr: binding to all interfaces, with no advertise address
// set, and this host has no private address to advertise instead.
var ErrNoAdvertiseAddr = errors.New("no private address to advertise: set the advertise address")
