"""Small apps that show redkit in a framework; the tests import and serve them."""
