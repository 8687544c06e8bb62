package wasm

// ABIVersions lists the Proxy-Wasm ABI versions this host runs, newest
// first, as "0.2.1" (for `wasmproxy version`).
func ABIVersions() []string {
	out := make([]string, len(abiMarkers))
	for i, m := range abiMarkers {
		v := m.name[len("proxy_abi_version_"):]
		b := []byte(v)
		for j := range b {
			if b[j] == '_' {
				b[j] = '.'
			}
		}
		out[i] = string(b)
	}
	return out
}
