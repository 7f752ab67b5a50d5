def test_fail(namespace):
    assert False
