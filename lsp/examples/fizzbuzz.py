"""FizzBuzz, with the body of `fizzbuzz` left for diffill to fill in."""


def fizzbuzz(n: int) -> list[str]:
    """Return the FizzBuzz sequence from 1 to n."""
    out = []
    for i in range(1, n + 1):
        
    return out


if __name__ == "__main__":
    print("\n".join(fizzbuzz(15)))
