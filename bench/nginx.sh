# Sourced by the benchmarks: nginx_conf DIR PORT WORKERS CONNECTIONS writes DIR/nginx/nginx.conf,
# a plain HTTP/1.1 server on 127.0.0.1:PORT serving DIR/www (JSON and HTML), keep-alive
# without limit, no access log, everything it writes under DIR/nginx.
nginx_conf() {
  local dir="$PWD/$1" port="$2" workers="$3" conns="$4"
  cat > "$dir/nginx/nginx.conf" <<CONF
worker_processes $workers;
daemon off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log;
events { worker_connections $conns; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $dir/nginx;
  proxy_temp_path $dir/nginx; fastcgi_temp_path $dir/nginx; uwsgi_temp_path $dir/nginx; scgi_temp_path $dir/nginx;
  types { application/json json; text/html html; }
  server { listen 127.0.0.1:$port; root $dir/www; }
}
CONF
}
