/*
 * rebind.so: an LD_PRELOAD library that moves a program's listening port.
 *
 * When REBIND_OLD_PORT and REBIND_NEW_PORT are both set to port numbers (1-65535) and the program calls bind()
 * on port REBIND_OLD_PORT, the address is replaced: an IPv4 bind goes to 127.0.0.1:REBIND_NEW_PORT, an IPv6 bind
 * to [::1]:REBIND_NEW_PORT. Every other bind() passes through untouched. websockify then listens on the old port
 * and forwards WebSocket sessions to the new one.
 *
 * Build: cc -fPIC -shared -O2 -o rebind.so rebind.c -ldl
 * Use:   REBIND_OLD_PORT=5901 REBIND_NEW_PORT=40000 LD_PRELOAD=./rebind.so vncserver :1
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

/* A port number from the environment, or 0 when unset or not a plain number in 1-65535. */
static unsigned short port_from_env(const char *name) {
    const char *text = getenv(name);
    if (text == NULL || *text == '\0') return 0;
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || value < 1 || value > 65535) return 0;
    return (unsigned short)value;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn real_bind = NULL;
    if (real_bind == NULL) {
        real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
        if (real_bind == NULL) {
            errno = ENOSYS;
            return -1;
        }
    }
    unsigned short old_port = port_from_env("REBIND_OLD_PORT");
    unsigned short new_port = port_from_env("REBIND_NEW_PORT");
    if (addr == NULL || old_port == 0 || new_port == 0) return real_bind(fd, addr, len);

    if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        if (ntohs(in->sin_port) != old_port) return real_bind(fd, addr, len);
        struct sockaddr_in moved;
        memcpy(&moved, in, sizeof(moved));
        moved.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        moved.sin_port = htons(new_port);
        return real_bind(fd, (const struct sockaddr *)&moved, sizeof(moved));
    }
    if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        if (ntohs(in6->sin6_port) != old_port) return real_bind(fd, addr, len);
        struct sockaddr_in6 moved;
        memcpy(&moved, in6, sizeof(moved));
        moved.sin6_addr = in6addr_loopback;
        moved.sin6_port = htons(new_port);
        moved.sin6_scope_id = 0;
        return real_bind(fd, (const struct sockaddr *)&moved, sizeof(moved));
    }
    return real_bind(fd, addr, len);
}
