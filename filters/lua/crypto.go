package lua

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"strings"

	// The hashes verifySignature names, linked in for crypto.Hash.
	_ "crypto/sha1"
	_ "crypto/sha256"
	_ "crypto/sha512"

	glua "github.com/yuin/gopher-lua"
)

// Envoy's signature check from Lua, with the standard library in place
// of BoringSSL's EVP_DigestVerify:
//
//	local key = handle:importPublicKey(der, #der):get()
//	local ok, err = handle:verifySignature("sha256", key, sig, #sig, data, #data)

const (
	pubKeyWrapperType = "envoy.PublicKeyWrapper"
	pubKeyType        = "envoy.PublicKey"
)

func registerCryptoTypes(reg func(string, map[string]glua.LGFunction)) {
	reg(pubKeyWrapperType, map[string]glua.LGFunction{"get": pubKeyGet})
	reg(pubKeyType, map[string]glua.LGFunction{})
}

// publicKey is an imported key; key is nil when the DER did not parse.
type publicKey struct{ key crypto.PublicKey }

// handleImportPublicKey(der, length) parses a DER SubjectPublicKeyInfo
// (EVP_parse_public_key's input). Its get() is the key for
// verifySignature, or nil when the bytes are not a public key (Envoy
// fails the import that way, silently).
func handleImportPublicKey(L *glua.LState) int {
	check(L, handleType)
	der := L.CheckString(2)
	n := L.CheckInt(3)
	if n < 0 || n > len(der) {
		L.ArgError(3, "the key's length is outside the string")
	}
	k, err := x509.ParsePKIXPublicKey([]byte(der[:n]))
	pk := &publicKey{}
	if err == nil {
		pk.key = k
	}
	L.Push(object(L, pubKeyWrapperType, pk))
	return 1
}

func pubKeyGet(L *glua.LState) int {
	ud := L.CheckUserData(1)
	pk, ok := ud.Value.(*publicKey)
	if !ok || ud.Metatable != L.GetTypeMetatable(pubKeyWrapperType) {
		L.ArgError(1, pubKeyWrapperType+" expected (call methods with ':')")
	}
	if pk.key == nil {
		L.Push(glua.LNil)
		return 1
	}
	L.Push(object(L, pubKeyType, pk))
	return 1
}

// hashes are the names Envoy's getHashFunction knows (any case).
var hashes = map[string]crypto.Hash{
	"sha1": crypto.SHA1, "sha224": crypto.SHA224, "sha256": crypto.SHA256,
	"sha384": crypto.SHA384, "sha512": crypto.SHA512,
}

// handleVerifySignature(hash, key, signature, sigLength, data,
// dataLength) returns true, nil when signature is key's over data, else
// false and Envoy's message: "<hash> is not supported.", "Failed to
// initialize digest verify." (a key type that cannot verify with a
// digest, e.g. Ed25519), "Failed to verify digest. Error code: 0". RSA
// keys verify PKCS #1 v1.5 signatures (OpenSSL's default padding),
// ECDSA keys ASN.1 (DER) ones. A key that is not importPublicKey's is
// a script error, "invalid public key".
func handleVerifySignature(L *glua.LState) int {
	check(L, handleType)
	name := L.CheckString(2)
	ud, _ := L.Get(3).(*glua.LUserData)
	var pk *publicKey
	if ud != nil && ud.Metatable == L.GetTypeMetatable(pubKeyType) {
		pk, _ = ud.Value.(*publicKey)
	}
	if pk == nil {
		L.RaiseError("invalid public key")
	}
	sig, data := prefix(L, 4), prefix(L, 6)
	fail := func(msg string) int {
		L.Push(glua.LFalse)
		L.Push(glua.LString(msg))
		return 2
	}
	h, ok := hashes[strings.ToLower(name)]
	if !ok {
		return fail(name + " is not supported.")
	}
	d := h.New()
	d.Write(data)
	sum := d.Sum(nil)
	var valid bool
	switch k := pk.key.(type) {
	case *rsa.PublicKey:
		valid = rsa.VerifyPKCS1v15(k, h, sum, sig) == nil
	case *ecdsa.PublicKey:
		valid = ecdsa.VerifyASN1(k, sum, sig)
	default:
		return fail("Failed to initialize digest verify.")
	}
	if !valid {
		return fail("Failed to verify digest. Error code: 0")
	}
	L.Push(glua.LTrue)
	L.Push(glua.LNil)
	return 2
}

// prefix is the first n bytes of the string argument at i, n the number
// after it (Envoy's (pointer, length) pairs).
func prefix(L *glua.LState, i int) []byte {
	s := L.CheckString(i)
	n := L.CheckInt(i + 1)
	if n < 0 || n > len(s) {
		L.ArgError(i+1, "the length is outside the string")
	}
	return []byte(s[:n])
}
