#include "CBerthShim.h"
