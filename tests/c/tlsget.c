/* tlsget: an HTTPS client linked with OpenSSL's static libraries (libssl.a, libcrypto.a),
 * for kshark's TLS tests: its SSL_read and SSL_write are in the executable itself, found
 * by their symbols. Sends GET PATH with Connection: close to 127.0.0.1:PORT and prints
 * the answer's length; with WAIT_MS, waits that long first (a new executable is hooked
 * when kshark next looks at the processes, within a quarter of a second).
 *
 *   cc tlsget.c /usr/lib/x86_64-linux-gnu/libssl.a /usr/lib/x86_64-linux-gnu/libcrypto.a -o tlsget
 *   tlsget PORT PATH [WAIT_MS]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: tlsget PORT PATH\n");
        return 2;
    }
    if (argc > 3)
        usleep((useconds_t)atoi(argv[3]) * 1000);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        perror("connect");
        return 1;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1) {
        fprintf(stderr, "tlsget: handshake failed\n");
        return 1;
    }
    char req[512];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: tlsget-static\r\nConnection: close\r\n\r\n", argv[2]);
    if (SSL_write(ssl, req, n) != n) {
        fprintf(stderr, "tlsget: write failed\n");
        return 1;
    }
    char buf[16384];
    long total = 0;
    int r;
    while ((r = SSL_read(ssl, buf, sizeof(buf))) > 0)
        total += r;
    printf("%ld\n", total);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return 0;
}
