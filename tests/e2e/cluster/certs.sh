# Certificates and kubeconfigs for the local cluster (sourced by cluster-up.sh).
# One CA signs everything; keys stay in the state directory and die with it.

PKI="$STATE_DIR/pki"

# ECDSA P-256 keys: generated in milliseconds where RSA takes seconds on a busy machine.
new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

issue_cert() {  # name subject kind(client|server|both) [subjectAltName]
  local name="$1" subject="$2" kind="$3" san="${4:-}"
  local ext="$PKI/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    case "$kind" in
      client) echo "extendedKeyUsage=clientAuth" ;;
      server) echo "extendedKeyUsage=serverAuth" ;;
      both) echo "extendedKeyUsage=serverAuth,clientAuth" ;;
    esac
    [[ -n "$san" ]] && echo "subjectAltName=$san"
  } > "$ext"
  new_key "$PKI/$name.key"
  openssl req -new -key "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

write_kubeconfig() {  # file user cert-name
  local file="$1" user="$2" cert="$3"
  cat > "$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: poet-e2e
  cluster:
    server: https://$BRIDGE_IP:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 < "$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 < "$PKI/$cert.crt")
    client-key-data: $(base64 -w0 < "$PKI/$cert.key")
contexts:
- name: poet-e2e
  context:
    cluster: poet-e2e
    user: $user
current-context: poet-e2e
KC
  chmod 0600 "$file"
}

make_pki() {
  mkdir -p "$PKI"
  chmod 0700 "$PKI"
  new_key "$PKI/ca.key"
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=poet-e2e-ca" -days 30 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$PKI/ca.crt" 2>/dev/null
  local api_san="IP:$BRIDGE_IP,IP:$KUBERNETES_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes"
  api_san+=",DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  issue_cert apiserver "/CN=kube-apiserver" server "$api_san"
  issue_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" client
  issue_cert admin "/O=system:masters/CN=poet-e2e-admin" client
  issue_cert controller-manager "/CN=system:kube-controller-manager" client
  issue_cert scheduler "/CN=system:kube-scheduler" client
  issue_cert kube-proxy "/CN=system:kube-proxy" client
  issue_cert kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" client
  issue_cert kubelet-server "/CN=$NODE_NAME" server "IP:$BRIDGE_IP,DNS:$NODE_NAME"
  new_key "$PKI/sa.key"
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  write_kubeconfig "$STATE_DIR/admin.kubeconfig" admin admin
  write_kubeconfig "$STATE_DIR/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
  write_kubeconfig "$STATE_DIR/scheduler.kubeconfig" system:kube-scheduler scheduler
  write_kubeconfig "$STATE_DIR/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
  write_kubeconfig "$STATE_DIR/kubelet.kubeconfig" "system:node:$NODE_NAME" kubelet-client
}
