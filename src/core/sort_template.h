/*
 * sort_template.h
 *	  An in-place introsort for arrays of one struct type, without
 *	  allocation: quicksort (median of three, Hoare partition) recursing
 *	  into the smaller part, heapsort past a depth bound, insertion sort for
 *	  short ranges, and a single pass for input already sorted (the usual
 *	  case for events read in time order).
 *
 * Include it after defining:
 *	  CDP_SORT_NAME   name of the static sort function to define
 *	  CDP_SORT_TYPE   element type
 *	  CDP_SORT_LESS(a, b)  nonzero if *a sorts before *b (pointers)
 * It may be included once per file for each sort; the macros are undefined
 * at the end.  Pure C, no PostgreSQL headers.
 */
#include <stdint.h>

#define CDP_SORT_CAT2(a, b) a##_##b
#define CDP_SORT_CAT(a, b) CDP_SORT_CAT2(a, b)
#define CDP_SORT_FN(part) CDP_SORT_CAT(CDP_SORT_NAME, part)

/* Swaps two elements. */
static inline void
CDP_SORT_FN(swap)(CDP_SORT_TYPE *a, CDP_SORT_TYPE *b)
{
	CDP_SORT_TYPE t = *a;

	*a = *b;
	*b = t;
}

/* Insertion sort, for short ranges. */
static void
CDP_SORT_FN(insertion_sort)(CDP_SORT_TYPE *a, int64_t n)
{
	int64_t		i;

	for (i = 1; i < n; i++)
	{
		CDP_SORT_TYPE x = a[i];
		int64_t		k = i;

		while (k > 0 && CDP_SORT_LESS(&x, &a[k - 1]))
		{
			a[k] = a[k - 1];
			k--;
		}
		a[k] = x;
	}
}

/* Restores the max-heap property below node i of a heap of n elements. */
static void
CDP_SORT_FN(sift_down)(CDP_SORT_TYPE *a, int64_t i, int64_t n)
{
	CDP_SORT_TYPE x = a[i];

	for (;;)
	{
		int64_t		c = 2 * i + 1;

		if (c >= n)
			break;
		if (c + 1 < n && CDP_SORT_LESS(&a[c], &a[c + 1]))
			c++;
		if (!CDP_SORT_LESS(&x, &a[c]))
			break;
		a[i] = a[c];
		i = c;
	}
	a[i] = x;
}

/* Heapsort: the fallback that bounds the quicksort's worst case. */
static void
CDP_SORT_FN(heap_sort)(CDP_SORT_TYPE *a, int64_t n)
{
	int64_t		i;

	for (i = n / 2 - 1; i >= 0; i--)
		CDP_SORT_FN(sift_down)(a, i, n);
	for (i = n - 1; i > 0; i--)
	{
		CDP_SORT_FN(swap)(&a[0], &a[i]);
		CDP_SORT_FN(sift_down)(a, 0, i);
	}
}

/*
 * Introsort: quicksort (median of three, Hoare partition), recursing into
 * the smaller part, heapsort past depth levels, insertion sort for short
 * ranges.
 */
static void
CDP_SORT_FN(intro_sort)(CDP_SORT_TYPE *a, int64_t n, int depth)
{
	while (n > 16)
	{
		int64_t		mid = n / 2;
		int64_t		i = -1;
		int64_t		k = n;
		CDP_SORT_TYPE pivot;

		if (depth-- == 0)
		{
			CDP_SORT_FN(heap_sort)(a, n);
			return;
		}
		if (CDP_SORT_LESS(&a[mid], &a[0]))
			CDP_SORT_FN(swap)(&a[mid], &a[0]);
		if (CDP_SORT_LESS(&a[n - 1], &a[mid]))
		{
			CDP_SORT_FN(swap)(&a[n - 1], &a[mid]);
			if (CDP_SORT_LESS(&a[mid], &a[0]))
				CDP_SORT_FN(swap)(&a[mid], &a[0]);
		}
		pivot = a[mid];
		/* a[0] <= pivot: the parts [0, k] and [k + 1, n) are both non-empty */
		for (;;)
		{
			do
				i++;
			while (CDP_SORT_LESS(&a[i], &pivot));
			do
				k--;
			while (CDP_SORT_LESS(&pivot, &a[k]));
			if (i >= k)
				break;
			CDP_SORT_FN(swap)(&a[i], &a[k]);
		}
		k++;
		if (k < n - k)
		{
			CDP_SORT_FN(intro_sort)(a, k, depth);
			a += k;
			n -= k;
		}
		else
		{
			CDP_SORT_FN(intro_sort)(a + k, n - k, depth);
			n = k;
		}
	}
	CDP_SORT_FN(insertion_sort)(a, n);
}

/* Sorts n elements in place (no allocation); sorted input costs one pass. */
static void
CDP_SORT_NAME(CDP_SORT_TYPE *elements, int64_t n)
{
	int64_t		i;
	int			depth = 0;

	for (i = 1; i < n; i++)
		if (CDP_SORT_LESS(&elements[i], &elements[i - 1]))
			break;
	if (i >= n)
		return;					/* already sorted: the usual case */
	for (i = n; i > 1; i >>= 1)
		depth += 2;
	CDP_SORT_FN(intro_sort)(elements, n, depth);
}

#undef CDP_SORT_FN
#undef CDP_SORT_CAT
#undef CDP_SORT_CAT2
#undef CDP_SORT_NAME
#undef CDP_SORT_TYPE
#undef CDP_SORT_LESS
