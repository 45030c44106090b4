/* libpq, loaded when the first PostgreSQL store opens.
 *
 * Linking libpq pulls in about twenty more shared libraries (TLS, Kerberos,
 * LDAP). Each adds mappings that every fork() copies and every child tears
 * down, so a bare fork and exit from a process that maps them costs about
 * 2.5 times more (measured: 6,100 against 15,800 children per second). The executor and its spawner fork for
 * every step, so bgwf opens libpq with dlopen only when a store needs it.
 *
 * The backend's files include this header instead of <libpq-fe.h>; the
 * macros below route each libpq call through the loaded table. */
#ifndef BGWF_PQ_LIBRARY_H
#define BGWF_PQ_LIBRARY_H

#include <libpq-fe.h>

/* Every libpq function the backend calls. */
#define PQ_LIBRARY_FUNCTIONS(X) \
    X(PQclear) \
    X(PQcmdStatus) \
    X(PQcmdTuples) \
    X(PQconnectdbParams) \
    X(PQerrorMessage) \
    X(PQexec) \
    X(PQexecParams) \
    X(PQexecPrepared) \
    X(PQfinish) \
    X(PQgetisnull) \
    X(PQgetvalue) \
    X(PQntuples) \
    X(PQprepare) \
    X(PQresultErrorMessage) \
    X(PQresultStatus) \
    X(PQsetNoticeProcessor) \
    X(PQstatus) \
    X(PQtransactionStatus)

struct pq_library {
#define PQ_LIBRARY_POINTER(name) __typeof__(name) *name##_function;
    PQ_LIBRARY_FUNCTIONS(PQ_LIBRARY_POINTER)
#undef PQ_LIBRARY_POINTER
};

extern struct pq_library pq_library;

/* Loads libpq once. Returns 0, or -1 with *error set to a message that
 * names the library and the Debian package that provides it. */
int pq_library_load(char **error);

#define PQclear pq_library.PQclear_function
#define PQcmdStatus pq_library.PQcmdStatus_function
#define PQcmdTuples pq_library.PQcmdTuples_function
#define PQconnectdbParams pq_library.PQconnectdbParams_function
#define PQerrorMessage pq_library.PQerrorMessage_function
#define PQexec pq_library.PQexec_function
#define PQexecParams pq_library.PQexecParams_function
#define PQexecPrepared pq_library.PQexecPrepared_function
#define PQfinish pq_library.PQfinish_function
#define PQgetisnull pq_library.PQgetisnull_function
#define PQgetvalue pq_library.PQgetvalue_function
#define PQntuples pq_library.PQntuples_function
#define PQprepare pq_library.PQprepare_function
#define PQresultErrorMessage pq_library.PQresultErrorMessage_function
#define PQresultStatus pq_library.PQresultStatus_function
#define PQsetNoticeProcessor pq_library.PQsetNoticeProcessor_function
#define PQstatus pq_library.PQstatus_function
#define PQtransactionStatus pq_library.PQtransactionStatus_function

#endif
