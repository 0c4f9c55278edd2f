#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
