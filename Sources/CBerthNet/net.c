#include "CBerthNet.h"
