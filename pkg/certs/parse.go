package certs

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
)

// parsePair builds the certificate of src from its files' contents and
// checks that it can be served at now: the certificate and its chain
// parse, the key parses and belongs to the certificate, and now is within
// the certificate's validity. Every error is one line naming the file at
// fault.
func parsePair(src source, certPEM, keyPEM []byte, now time.Time) (*tls.Certificate, error) {
	ders := certificateBlocks(certPEM)
	if len(ders) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate in it", src.cert)
	}
	leaf, err := x509.ParseCertificate(ders[0])
	if err != nil {
		return nil, fmt.Errorf("%s: certificate does not parse: %s", src.cert, oneLine(err))
	}
	for i, der := range ders[1:] {
		if _, err := x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("%s: certificate %d of the chain does not parse: %s", src.cert, i+2, oneLine(err))
		}
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", src.key, oneLine(err))
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("%s: private key does not match certificate %s", src.key, src.cert)
	}
	switch {
	case now.Before(leaf.NotBefore):
		return nil, fmt.Errorf("%s: certificate not valid before %s", src.cert, leaf.NotBefore.UTC().Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		return nil, fmt.Errorf("%s: certificate expired at %s", src.cert, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &tls.Certificate{Certificate: ders, PrivateKey: key, Leaf: leaf}, nil
}

// certificateBlocks returns the DER of each CERTIFICATE block, in order;
// other blocks are skipped.
func certificateBlocks(data []byte) [][]byte {
	var ders [][]byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return ders
		}
		if b.Type == "CERTIFICATE" {
			ders = append(ders, b.Bytes)
		}
	}
}

// parseKey returns the first private key in data: PKCS #8, PKCS #1 (RSA)
// or SEC 1 (EC, after the EC PARAMETERS block openssl ecparam writes).
func parseKey(data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		switch {
		case b == nil:
			return nil, errors.New("no PEM private key in it")
		case !strings.HasSuffix(b.Type, "PRIVATE KEY"):
			continue
		case b.Type == "ENCRYPTED PRIVATE KEY" || b.Headers["Proc-Type"] != "":
			return nil, errors.New("private key is encrypted; want it without a passphrase")
		}
		key, err := parseKeyDER(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("private key does not parse: %w", err)
		}
		return key, nil
	}
}

func parseKeyDER(der []byte) (crypto.Signer, error) {
	if key, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := key.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("a %T cannot sign", key)
	}
	if key, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return key, nil
	}
	if key, err := x509.ParseECPrivateKey(der); err == nil {
		return key, nil
	}
	return nil, errors.New("neither PKCS #8, PKCS #1 nor SEC 1")
}

// oneLine keeps a library's error message on one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
